"""`reverb.execution.replay` runs a function over a memo without running any step, and
`drift` says whether the code reaches the recorded steps in the same order."""

import asyncio
from collections import Counter

import reverb
from reverb import Context, event
from reverb.execution import ErrorInfo, Invocation, MemoizedStep, Replayed, drift, replay

ran: Counter[str] = Counter()


def work(name: str) -> str:
    ran[name] += 1
    return name


app = reverb.App("replays")


@app.function("signup", trigger=event("user.created"))
async def signup(ctx: Context) -> str:
    user = await ctx.step.run("create", work, "create")
    await ctx.step.sleep("nap", "1d")
    await ctx.step.run("welcome", work, "welcome")
    return str(user)


@app.function("fan", trigger=event("fan"))
async def fan(ctx: Context) -> list[str]:
    return list(
        await asyncio.gather(
            ctx.step.run("left", work, "left"),
            ctx.step.run("right", work, "right"),
        )
    )


@app.function("shape", trigger=event("shape"))
async def shape(ctx: Context) -> int:
    user = await ctx.step.run("create", work, "create")
    await ctx.step.sleep("nap", "1d")
    return int(user["id"])


def memo(*entries: tuple[str, bytes | None]) -> tuple[MemoizedStep, ...]:
    """(id, output JSON) pairs; None: the step still waits."""
    return tuple(
        MemoizedStep(step_id, pending=True) if output is None else MemoizedStep(step_id, output)
        for step_id, output in entries
    )


async def replayed(function_id: str, *entries: tuple[str, bytes | None]) -> Replayed:
    invocation = Invocation("run-1", function_id, (), memo(*entries))
    return await replay(app.functions[function_id], invocation)


async def test_a_sleeping_run_replays_to_its_sleep_without_running_a_step() -> None:
    ran.clear()
    result = await replayed("signup", ("create", b'"u1"'), ("nap", None))

    assert result == Replayed(("create", "nap"), (), ("nap",), "stopped")
    assert drift(["create", "nap"], result) is None
    assert not ran


async def test_a_new_step_after_the_recorded_ones_is_no_drift() -> None:
    ran.clear()
    result = await replayed("signup", ("create", b'"u1"'), ("nap", b"null"))

    assert result.new == ("welcome",)
    assert drift(["create", "nap"], result) is None
    assert not ran  # the new step was reached, not run


async def test_a_renamed_step_is_drift() -> None:
    result = await replayed("signup", ("make-user", b'"u1"'), ("nap", None))

    reason = drift(["make-user", "nap"], result)
    assert reason == (
        "recorded step(s) 'make-user', 'nap' not reached: the code reaches new step(s)"
        " 'create' first"
    )


async def test_steps_reached_in_another_order_are_drift() -> None:
    result = await replayed("signup", ("nap", b"null"), ("create", b'"u1"'))

    assert drift(["nap", "create"], result) == (
        "steps reached in another order: 'create', 'nap', recorded 'nap', 'create'"
    )


async def test_code_that_fails_on_a_recorded_output_is_drift() -> None:
    # The new code reads `user["id"]`; the recorded output is a string.
    result = await replayed("shape", ("create", b'"u1"'), ("nap", b"null"), ("more", b"1"))

    assert result.ending == "raised"
    assert drift(["create", "nap", "more"], result) == (
        "recorded step(s) 'more' not reached: the function raises TypeError first"
    )


async def test_parallel_steps_are_all_reached() -> None:
    ran.clear()
    result = await replayed("fan", ("right", b'"r"'), ("left", b'"l"'))

    assert result.ending == "returned"
    assert set(result.reached) == {"left", "right"}
    assert drift(["left", "right"], result) is None
    assert not ran


async def test_a_failed_step_replays_its_error() -> None:
    entries = (MemoizedStep("create", error=ErrorInfo("ValueError", "no")),)
    result = await replay(app.functions["signup"], Invocation("r", "signup", (), entries))

    assert (result.ending, result.error) == ("raised", "StepError")


@app.function("mailer", trigger=event("mail"))
async def mailer(ctx: Context) -> None:
    # v2 of a function that was `send`, then `nap`: a `send` added before the first.
    await ctx.step.run("send", work, "send-new")
    await ctx.step.run("send", work, "send")
    await ctx.step.sleep("nap", "1d")


async def test_a_step_added_before_with_a_name_used_further_on_shifts_the_ids() -> None:
    ran.clear()
    # Recorded by v1: `send` ran, then `nap` began.
    result = await replayed("mailer", ("send", b'"send"'), ("nap", None))

    # The new step takes the recorded `send`; the old one is now `send:1`, new to the memo.
    assert result.reached == ("send", "send:1")
    assert result.new == ("send:1",)
    assert drift(["send", "nap"], result) == (
        "recorded step(s) 'nap' not reached: the code reaches new step(s) 'send:1' first"
    )
    assert not ran
