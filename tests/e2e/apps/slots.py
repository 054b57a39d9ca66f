"""An app for the flow-control crash test: runs of a function with a concurrency limit of
2 hold their slot in a step until the test creates the release file."""

import os
import time
from pathlib import Path

import reverb
from reverb import Context, event

app = reverb.App("slots")
LIMIT = 2


def hold(n: int) -> int:
    """A sync step (a thread of the host): another process, the test, decides when it
    ends by creating the file."""
    release = Path(os.environ["REVERB_TEST_RELEASE"])
    while not release.exists():
        time.sleep(0.02)
    return n


@app.function("slotted", trigger=event("slots.test"), concurrency=LIMIT)
async def slotted(ctx: Context) -> int:
    return int(await ctx.step.run("hold", hold, ctx.event.data["n"]))
