"""An app for crash tests: every step execution is logged to a file, so a test can tell
which steps ran again after a process was killed."""

import os
import time
import uuid
from pathlib import Path

import reverb
from reverb import Context, event

app = reverb.App("crash")
STEPS = 8


def record(step: str) -> str:
    log = Path(os.environ["REVERB_TEST_STEP_LOG"])
    with log.open("a") as file:
        file.write(f"start {step}\n")
    time.sleep(0.2)  # a window in which the test can kill a process mid-step
    value = uuid.uuid4().hex
    with log.open("a") as file:
        file.write(f"end {step} {value}\n")
    return value


@app.function("eight-steps", trigger=event("crash.test"))
async def eight_steps(ctx: Context) -> list[str]:
    return [await ctx.step.run(f"step-{i}", record, f"step-{i}") for i in range(STEPS)]
