"""`ctx.logger` in one invocation, in-process: each line is a `LogLine` message with its
level, fields and step; lines are not sent again while the function replays its memo;
values JSON cannot hold, long messages, large fields and floods are bounded; logging never
fails the function."""

import asyncio
import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

import reverb
from reverb import Context, event
from reverb._execution import Execution
from reverb._logger import FIELDS_LIMIT, LINES_LIMIT, MESSAGE_LIMIT
from reverb._protocol import (
    Ack,
    AckResult,
    Invocation,
    LogLine,
    MemoizedStep,
    Message,
    RunCompleted,
    StepReport,
)
from reverb.execution import replay
from tests.unit.test_sdk_execution import drive, execution_of


def definition_of(function: Any) -> reverb.FunctionDefinition:
    app = reverb.App("logger-tests")
    app.function("f", trigger=event("e"))(function)
    return app.functions["f"]


def lines(messages: list[Message]) -> list[LogLine]:
    return [message for message in messages if isinstance(message, LogLine)]


def described(messages: list[Message]) -> list[tuple[str, str, str | None, Any]]:
    return [
        (line.level, line.message, line.step_id, orjson.loads(line.fields or b"null"))
        for line in lines(messages)
    ]


async def test_each_level_is_a_line_with_its_fields() -> None:
    async def function(ctx: Context) -> None:
        ctx.logger.debug("looking", n=1)
        ctx.logger.info("charged", amount=3, currency="EUR")
        ctx.logger.warning("slow")
        ctx.logger.error("declined", card={"last4": "4242"}, codes=[1, 2])

    before = datetime.now(UTC)
    messages = await drive(function)
    assert described(messages) == [
        ("debug", "looking", None, {"n": 1}),
        ("info", "charged", None, {"amount": 3, "currency": "EUR"}),
        ("warning", "slow", None, None),
        ("error", "declined", None, {"card": {"last4": "4242"}, "codes": [1, 2]}),
    ]
    assert all(before <= line.at <= datetime.now(UTC) for line in lines(messages))
    assert messages[-1] == RunCompleted(b"null")


async def test_a_line_logged_inside_a_step_names_the_step_and_comes_before_its_report() -> None:
    async def charge(ctx: Context) -> int:
        ctx.logger.info("charging", amount=3)
        return 3

    def receipt(ctx: Context) -> str:  # a sync step: it runs in a thread
        assert threading.current_thread() is not threading.main_thread()
        ctx.logger.info("receipt sent")
        return "sent"

    async def function(ctx: Context) -> None:
        await ctx.step.run("charge", charge, ctx)
        await ctx.step.run("charge", charge, ctx)  # the repeat: "charge:1"
        await ctx.step.run("receipt", receipt, ctx)
        ctx.logger.info("done")

    messages = await drive(function)
    assert [
        (m.message, m.step_id) if isinstance(m, LogLine) else type(m).__name__ for m in messages
    ] == [
        ("charging", "charge"),
        "StepReport",
        ("charging", "charge:1"),
        "StepReport",
        ("receipt sent", "receipt"),
        "StepReport",
        ("done", None),
        "RunCompleted",
    ]


async def test_tasks_a_step_starts_log_as_the_step() -> None:
    """asyncio.gather inside a step: its tasks' lines are the step's (once the invocation
    has logged, each step marks its context), and parallel steps keep their own."""

    async def part(ctx: Context, number: int) -> int:
        await asyncio.sleep(0)
        ctx.logger.info("part", number=number)
        return number

    async def parts(ctx: Context) -> list[int]:
        return list(await asyncio.gather(part(ctx, 1), part(ctx, 2)))

    async def function(ctx: Context) -> None:
        ctx.logger.info("start")
        await asyncio.gather(
            ctx.step.run("left", parts, ctx),
            ctx.step.run("right", part, ctx, 3),
        )

    found = {(line.step_id, line.message, line.fields) for line in lines(await drive(function))}
    assert found == {
        (None, "start", None),
        ("left", "part", b'{"number":1}'),
        ("left", "part", b'{"number":2}'),
        ("right", "part", b'{"number":3}'),
    }


async def test_lines_are_not_sent_again_while_the_function_replays_its_memo() -> None:
    async def function(ctx: Context) -> str:
        ctx.logger.info("started")
        await ctx.step.run("charge", lambda: 3)
        ctx.logger.info("charged")
        await ctx.step.sleep("wait", "1d")
        ctx.logger.info("woke up")
        await ctx.step.run("ship", lambda: "shipped")
        return "done"

    memo = [MemoizedStep("charge", output=b"3"), MemoizedStep("wait", output=b"null")]
    messages = await drive(function, memo=memo)
    assert described(messages) == [("info", "woke up", None, None)]


async def test_code_before_a_step_run_again_after_failing_is_a_replay() -> None:
    """The step being retried is not in the memo (the host runs it), but the code before
    it ran already: its lines are not sent again; the step's own lines are."""

    async def function(ctx: Context) -> None:
        ctx.logger.info("started")
        await ctx.step.run("charge", lambda: ctx.logger.info("charging"))
        ctx.logger.info("charged")

    execution = Execution(
        definition_of(function), Invocation("run-1", "f", (), (), 1, {"charge": 1})
    )
    execution.start()
    messages = []
    async with asyncio.timeout(5):
        async for message in execution.messages():
            messages.append(message)
            if isinstance(message, StepReport):
                execution.acknowledge(Ack(message.step_id, AckResult.CONTINUE))
    assert [(line.message, line.step_id) for line in lines(messages)] == [
        ("charging", "charge"),
        ("charged", None),
    ]


async def test_a_new_step_before_the_memo_is_used_up_ends_the_replay() -> None:
    """Code changed since the memo was recorded: once it reaches a step the memo does not
    have, its lines are new ones."""

    async def function(ctx: Context) -> None:
        ctx.logger.info("started")
        await ctx.step.run("new", lambda: 1)
        ctx.logger.info("after the new step")

    messages = await drive(function, memo=[MemoizedStep("removed", output=b"1")])
    assert [line.message for line in lines(messages)] == ["after the new step"]


async def test_values_json_cannot_hold_are_kept_as_their_repr() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

        def __str__(self) -> str:
            raise RuntimeError("no str")

    async def function(ctx: Context) -> str:
        ctx.logger.info("paid", amount=Decimal("3.10"), at=datetime(2026, 1, 1, tzinfo=UTC))
        ctx.logger.info("odd", value=Broken(), nan=float("nan"), ok=1)
        ctx.logger.info(Broken())
        ctx.logger.info(42)
        return "went on"

    messages = await drive(function)
    assert described(messages) == [
        (
            "info",
            "paid",
            None,
            {
                "amount": "Decimal('3.10')",
                "at": "datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)",
            },
        ),
        (
            "info",
            "odd",
            None,
            {"value": "<Broken: repr() raised RuntimeError>", "nan": "nan", "ok": 1},
        ),
        ("info", "<Broken: str() raised RuntimeError>", None, None),
        ("info", "42", None, None),
    ]
    assert messages[-1] == RunCompleted(b'"went on"')


async def test_long_messages_large_fields_and_floods_are_bounded() -> None:
    async def function(ctx: Context) -> None:
        ctx.logger.info("m" * (MESSAGE_LIMIT + 100))
        ctx.logger.info("big", blob="x" * FIELDS_LIMIT)
        ctx.logger.info("long repr", value=b"y" * 5000)
        for number in range(LINES_LIMIT + 50):
            ctx.logger.debug("line", number=number)

    found = lines(await drive(function))
    assert len(found) == LINES_LIMIT + 1
    cut, big, long_repr = found[:3]
    assert len(cut.message) == MESSAGE_LIMIT and cut.message.endswith("…")
    assert orjson.loads(big.fields or b"") == {
        "fields_dropped": f"{FIELDS_LIMIT + 11} bytes of fields, more than the"
        f" {FIELDS_LIMIT} a log line keeps"
    }
    assert len(orjson.loads(long_repr.fields or b"")["value"]) == 1024
    last = found[-1]
    assert (last.level, last.message) == (
        "warning",
        f"more than {LINES_LIMIT} log lines in one invocation: the rest dropped",
    )


async def test_a_function_that_never_logs_sends_no_line() -> None:
    async def function(ctx: Context) -> None:
        await ctx.step.run("a", lambda: 1)
        await ctx.step.run("b", lambda: 2)

    execution = execution_of(function)
    execution.start()
    messages = []
    async for message in execution.messages():
        messages.append(message)
        if isinstance(message, StepReport):
            execution.acknowledge(Ack(message.step_id, AckResult.CONTINUE))
    assert lines(messages) == []
    assert not execution._logging


async def test_the_offline_replay_of_reverb_check_logs_nothing() -> None:
    app = reverb.App("logger-replay")

    @app.function("f", trigger=event("e"))
    async def function(ctx: Context) -> None:
        ctx.logger.info("hello", n=1)
        await ctx.step.run("a", lambda: 1)

    invocation = Invocation("run-1", "f", (), (MemoizedStep("a", output=b"1"),))
    replayed = await replay(app.functions["f"], invocation)
    assert replayed.ending == "returned"
