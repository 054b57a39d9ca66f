"""The app the chaos run loads, served by `reverb host bench/chaos/app.py`.

Every step execution appends two lines to the file named by REVERB_CHAOS_STEP_LOG (one
`os.write` each, O_APPEND, so lines of concurrent hosts never interleave and survive a
kill -9 of the host): `start` when the step's code begins, `end` with the value it
returns. Each value is a fresh token, so the checker can tell which execution produced
the output the engine committed, and whether an execution began after that commit.
"""

import asyncio
import os
import time
import uuid

import orjson

import reverb
from reverb import Context, event

app = reverb.App("chaos")

STEPS_EVENT = "chaos.steps"
SLEEP_EVENT = "chaos.sleep"


def _append(line: dict[str, object]) -> None:
    descriptor = os.open(
        os.environ["REVERB_CHAOS_STEP_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
    )
    try:
        os.write(descriptor, orjson.dumps(line) + b"\n")
    finally:
        os.close(descriptor)


async def work(run_id: str, step_id: str, attempt: int, pause: float) -> str:
    """One step: record its start, take `pause` seconds, record and return a fresh token."""
    common = {"run": run_id, "step": step_id, "attempt": attempt, "pid": os.getpid()}
    _append({"kind": "start", "at": time.time(), **common})
    await asyncio.sleep(pause)
    token = uuid.uuid4().hex
    _append({"kind": "end", "at": time.time(), "token": token, **common})
    return token


@app.function("chaos-steps", trigger=event(STEPS_EVENT))
async def steps(ctx: Context) -> list[str]:
    count = int(ctx.event.data["steps"])
    pause = float(ctx.event.data["pause"])
    return [
        await ctx.step.run(f"step-{index}", work, ctx.run_id, f"step-{index}", ctx.attempt, pause)
        for index in range(count)
    ]


@app.function("chaos-sleep", trigger=event(SLEEP_EVENT))
async def sleeper(ctx: Context) -> list[str]:
    pause = float(ctx.event.data["pause"])
    before: str = await ctx.step.run("before", work, ctx.run_id, "before", ctx.attempt, pause)
    await ctx.step.sleep("nap", float(ctx.event.data["seconds"]))
    after: str = await ctx.step.run("after", work, ctx.run_id, "after", ctx.attempt, pause)
    return [before, after]


# The step ids each function commits, in order, for the checker.
def expected_steps(name: str, data: dict[str, object]) -> list[str]:
    if name == SLEEP_EVENT:
        return ["before", "after"]
    count = data["steps"]
    assert isinstance(count, int)
    return [f"step-{index}" for index in range(count)]
