"""One invocation in-process: replays, waits, parallel steps, suspension and abandonment."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import reverb
from reverb import Context, event
from reverb._execution import Execution
from reverb._protocol import (
    Ack,
    AckResult,
    ErrorInfo,
    EventInput,
    Invocation,
    InvokeFunction,
    MemoizedStep,
    Message,
    ProtocolError,
    RunCompleted,
    RunFailed,
    SendEvents,
    Sleep,
    StepReport,
    Suspended,
)

Function = Callable[[Context], Awaitable[Any]]
Policy = Callable[[StepReport], Ack]


def waits_pending(report: StepReport) -> Ack:
    waiting = isinstance(report.operation, Sleep | InvokeFunction)
    return Ack(report.step_id, AckResult.PENDING if waiting else AckResult.CONTINUE)


def execution_of(
    function: Function, memo: Sequence[MemoizedStep] = (), events: int = 1
) -> Execution:
    app = reverb.App("execution-tests")
    app.function("f", trigger=event("e"))(function)
    triggers = tuple(
        reverb.Event(f"e-{n}", "e", {"n": n}, datetime.now(UTC)) for n in range(events)
    )
    return Execution(app.functions["f"], Invocation("run-1", "f", triggers, tuple(memo), 2))


async def drive(
    function: Function, policy: Policy = waits_pending, memo: Sequence[MemoizedStep] = ()
) -> list[Message]:
    execution = execution_of(function, memo)
    execution.start()
    messages: list[Message] = []
    async with asyncio.timeout(5):
        async for message in execution.messages():
            messages.append(message)
            if isinstance(message, StepReport):
                execution.acknowledge(policy(message))
    await execution.close()
    return messages


def step_ids(messages: Sequence[Message]) -> list[str]:
    return [m.step_id if isinstance(m, StepReport) else type(m).__name__ for m in messages]


async def test_the_context_describes_the_run() -> None:
    async def function(ctx: Context) -> list[Any]:
        return [ctx.run_id, ctx.function_id, ctx.attempt, ctx.event.id, len(ctx.events)]

    execution = execution_of(function, events=2)
    execution.start()
    messages = [message async for message in execution.messages()]
    assert messages == [RunCompleted(b'["run-1","f",2,"e-0",2]')]


async def test_a_memoized_failure_raises_step_error_at_the_call_site() -> None:
    async def function(ctx: Context) -> str:
        try:
            await ctx.step.run("charge", lambda: "never runs")
        except reverb.StepError as error:
            return f"{error.step_id}: {error.error_type}: {error.message}"
        return "no error"

    memo = [MemoizedStep("charge", error=ErrorInfo("CardDeclined", "no funds"))]
    assert await drive(function, memo=memo) == [RunCompleted(b'"charge: CardDeclined: no funds"')]


async def test_sleep_until_reports_its_wake_time() -> None:
    async def function(ctx: Context) -> None:
        await ctx.step.sleep_until("new-year", "2031-01-01T00:00:00+01:00")

    report, final = await drive(function)
    assert isinstance(report, StepReport)
    assert report.operation == Sleep(datetime(2030, 12, 31, 23, tzinfo=UTC))
    assert final == Suspended()


@pytest.mark.parametrize("when", ["2031-01-01T00:00:00", "tomorrow", 1234])
async def test_sleep_until_needs_an_aware_time(when: object) -> None:
    async def function(ctx: Context) -> None:
        await ctx.step.sleep_until("later", when)  # type: ignore[arg-type]

    (final,) = await drive(function)
    assert isinstance(final, RunFailed)
    assert (final.error.type, final.retriable) == ("StepArgumentError", False)
    assert "step 'later': sleep_until" in final.error.message


async def test_a_past_sleep_is_still_reported() -> None:
    async def function(ctx: Context) -> None:
        await ctx.step.sleep("zero", 0)

    report, final = await drive(function)
    assert isinstance(report, StepReport) and isinstance(report.operation, Sleep)
    assert report.operation.wake_at <= datetime.now(UTC)
    assert final == Suspended()


async def test_send_event_accepts_a_list_of_events() -> None:
    when = datetime(2030, 1, 1, tzinfo=UTC)

    async def function(ctx: Context) -> list[str]:
        return await ctx.step.send_event(
            "fan-out",
            [{"name": "a", "data": {"x": 1}, "id": "a-1"}, {"name": "b", "ts": when}],
        )

    def ids(report: StepReport) -> Ack:
        return Ack(report.step_id, AckResult.CONTINUE, output=b'["a-1","b-2"]')

    report, final = await drive(function, ids)
    assert isinstance(report, StepReport)
    assert report.operation == SendEvents(
        (EventInput("a", b'{"x":1}', "a-1"), EventInput("b", b"{}", ts=when))
    )
    assert final == RunCompleted(b'["a-1","b-2"]')


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (("", None), "non-empty name"),
        (([], None), "non-empty list"),
        (([{"data": {}}], None), "non-empty name"),
        (([{"name": "a", "colour": "red"}], None), "unknown event fields"),
        ((["a"], None), "is a dict"),
        (([{"name": "a"}], {"x": 1}), "only with an event name"),
        (("a", [1]), "must be a dict"),
    ],
)
async def test_send_event_refuses_bad_events(arguments: tuple[Any, Any], problem: str) -> None:
    async def function(ctx: Context) -> None:
        await ctx.step.send_event("send", *arguments)

    (final,) = await drive(function)
    assert isinstance(final, RunFailed)
    assert problem in final.error.message


async def test_invoke_data_must_be_json() -> None:
    async def function(ctx: Context) -> None:
        await ctx.step.invoke("child", "other", {"when": datetime.now(UTC)})

    (final,) = await drive(function)
    assert isinstance(final, RunFailed)
    assert "step 'child': invoke data is not JSON" in final.error.message


async def test_the_run_suspends_only_after_running_steps_are_acked() -> None:
    async def function(ctx: Context) -> None:
        async def chain() -> None:
            await ctx.step.run("x", lambda: 1)
            await ctx.step.run("y", lambda: 2)

        await asyncio.gather(ctx.step.sleep("nap", "1h"), chain())

    messages = await drive(function)
    assert step_ids(messages) == ["nap", "x", "y", "Suspended"]


async def test_steps_after_a_pending_wait_still_report_before_suspending() -> None:
    async def function(ctx: Context) -> None:
        nap = asyncio.ensure_future(ctx.step.sleep("nap", "1h"))
        for _ in range(3):
            await asyncio.sleep(0)
        await ctx.step.run("after", lambda: None)
        await nap

    assert step_ids(await drive(function)) == ["nap", "after", "Suspended"]


async def test_user_code_cannot_swallow_the_suspension() -> None:
    calls: list[str] = []

    async def function(ctx: Context) -> None:
        try:
            await ctx.step.sleep("nap", "1h")
        except Exception:
            calls.append("swallowed")
        finally:
            calls.append("finally")
        calls.append("went on")

    assert step_ids(await drive(function)) == ["nap", "Suspended"]
    assert calls == ["finally"]


async def test_steps_started_after_abandonment_report_nothing() -> None:
    async def function(ctx: Context) -> None:
        try:
            await ctx.step.sleep("nap", "1h")
        except BaseException:
            await ctx.step.run("sneaky", lambda: None)

    assert step_ids(await drive(function)) == ["nap", "Suspended"]


async def test_closing_abandons_a_function_awaiting_an_ack() -> None:
    cleaned_up = asyncio.Event()

    async def function(ctx: Context) -> None:
        try:
            await ctx.step.run("slow", lambda: 1)
        finally:
            cleaned_up.set()

    execution = execution_of(function)
    execution.start()
    async with asyncio.timeout(5):
        async for message in execution.messages():
            assert isinstance(message, StepReport)
            await execution.close()
        await cleaned_up.wait()
    assert not execution.finished


async def test_an_ack_for_an_unreported_step_is_a_protocol_error() -> None:
    async def function(ctx: Context) -> None:
        await ctx.step.sleep("nap", timedelta(hours=1))

    execution = execution_of(function)
    execution.start()
    with pytest.raises(ProtocolError, match="'other'"):
        execution.acknowledge(Ack("other", AckResult.CONTINUE))
    await execution.close()


async def test_a_cron_run_has_an_empty_event() -> None:
    async def function(ctx: Context) -> list[Any]:
        return [ctx.event.name, ctx.event.data, list(ctx.events)]

    app = reverb.App("cron")
    app.function("f", trigger=reverb.cron("0 9 * * *"))(function)
    execution = Execution(app.functions["f"], Invocation("run-1", "f", ()))
    execution.start()
    assert [m async for m in execution.messages()] == [RunCompleted(b'["",{},[]]')]
