"""The functions the benchmark runs, served by `reverb host bench.engine.app:app`.

Steps are async functions, so a step costs the engine's work and not a thread hop.
Event data chooses the shape: `steps` (steps per run), `payload` (bytes of padding
in each step's output), `seconds` (how long a sleep lasts).
"""

from typing import Any

import reverb
from reverb import Context, event

FANOUT_FUNCTIONS = 50

app = reverb.App("reverb-bench")


async def small(index: int, padding: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = {"index": index, "ok": True}
    if padding:
        result["padding"] = "x" * padding
    return result


@app.function("bench-one-step", trigger=event("bench.one"), retries=0)
async def one_step(ctx: Context) -> dict[str, Any]:
    result: dict[str, Any] = await ctx.step.run("only", small, 0)
    return result


@app.function("bench-steps", trigger=event("bench.steps"), retries=0)
async def many_steps(ctx: Context) -> int:
    steps = int(ctx.event.data.get("steps", 10))
    padding = int(ctx.event.data.get("payload", 0))
    for index in range(steps):
        await ctx.step.run(f"step-{index}", small, index, padding)
    return steps


async def logged(ctx: Context, index: int, padding: int = 0) -> dict[str, Any]:
    ctx.logger.info("step done", index=index)
    return await small(index, padding)


@app.function("bench-steps-logged", trigger=event("bench.steps-logged"), retries=0)
async def logged_steps(ctx: Context) -> int:
    """The 10-step benchmark with one `ctx.logger` line per step (section `logs`)."""
    steps = int(ctx.event.data.get("steps", 10))
    padding = int(ctx.event.data.get("payload", 0))
    for index in range(steps):
        await ctx.step.run(f"step-{index}", logged, ctx, index, padding)
    return steps


# Flow control (section `flow`): the 10-step function under a concurrency limit that never
# binds; a limit of 10 whose slots are handed on; 100 keys of limit 1.
NEVER_BINDING = 1_000_000


@app.function(
    "bench-steps-limited",
    trigger=event("bench.steps-limited"),
    retries=0,
    concurrency=NEVER_BINDING,
)
async def limited_steps(ctx: Context) -> int:
    return await many_steps(ctx)


@app.function("bench-handoff", trigger=event("bench.handoff"), retries=0, concurrency=10)
async def handoff(ctx: Context) -> dict[str, Any]:
    result: dict[str, Any] = await ctx.step.run("only", small, 0)
    return result


@app.function(
    "bench-keyed",
    trigger=event("bench.keyed"),
    retries=0,
    concurrency=reverb.Concurrency(limit=1, key="event.data.key"),
)
async def keyed_steps(ctx: Context) -> int:
    return await many_steps(ctx)


@app.function("bench-sleep", trigger=event("bench.sleep"), retries=0)
async def sleeper(ctx: Context) -> None:
    await ctx.step.run("before", small, 0)
    await ctx.step.sleep("nap", float(ctx.event.data.get("seconds", 5)))
    await ctx.step.run("after", small, 1)


def _fanout(number: int) -> None:
    @app.function(f"bench-fanout-{number:02d}", trigger=event("bench.fanout"), retries=0)
    async def fanout(ctx: Context) -> dict[str, Any]:
        result: dict[str, Any] = await ctx.step.run("only", small, number)
        return result


for _number in range(FANOUT_FUNCTIONS):
    _fanout(_number)


@app.function("bench-wait", trigger=event("bench.wait.start"), retries=0)
async def waiter(ctx: Context) -> None:
    await ctx.step.wait_for_event(
        "wait", event="bench.wait.done", match="data.key", timeout=float(3600)
    )
    await ctx.step.run("after", small, 1)
