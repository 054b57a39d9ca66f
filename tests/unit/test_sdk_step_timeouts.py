"""`ctx.step.run(reverb.Step(id, timeout=...), fn, ...)`: an attempt past its timeout fails
with the retriable StepTimeout, and the options take no keyword from fn."""

import asyncio
import threading
from typing import Any

import pytest

import reverb
from reverb import Context
from reverb._protocol import Ack, AckResult, RunCompleted, RunFailed, StepFailure, StepReport
from tests.unit.test_sdk_execution import drive


def retry_later(report: StepReport) -> Ack:
    if isinstance(report.operation, StepFailure):
        return Ack(report.step_id, AckResult.RETRY_LATER)
    return Ack(report.step_id, AckResult.CONTINUE)


async def test_a_step_past_its_timeout_fails_retriably() -> None:
    never = asyncio.Event()

    async def hangs() -> None:
        await never.wait()

    async def function(ctx: Context) -> Any:
        return await ctx.step.run(reverb.Step("charge", timeout="20ms"), hangs)

    report, *_ = await drive(function, retry_later)

    assert isinstance(report, StepReport)
    assert (report.step_id, report.name) == ("charge", "charge")
    failure = report.operation
    assert isinstance(failure, StepFailure)
    assert (failure.error.type, failure.retriable) == ("StepTimeout", True)
    assert failure.error.message == "step 'charge' did not finish within 0:00:00.020000"


async def test_the_options_take_no_keyword_from_the_function() -> None:
    def charge(amount: int, **kwargs: Any) -> dict[str, Any]:
        return {"amount": amount, **kwargs}

    async def function(ctx: Context) -> Any:
        step = reverb.Step("charge", timeout="5s")
        return await ctx.step.run(step, charge, 3, timeout=7, id="card", name="x")

    messages = await drive(function)

    assert messages[-1] == RunCompleted(b'{"amount":3,"timeout":7,"id":"card","name":"x"}')


async def test_a_timeout_error_of_the_functions_own_is_not_a_step_timeout() -> None:
    async def gives_up() -> None:
        raise TimeoutError("the bank did not answer")

    async def function(ctx: Context) -> Any:
        return await ctx.step.run(reverb.Step("charge", timeout="5s"), gives_up)

    report, *_ = await drive(function, retry_later)

    assert isinstance(report, StepReport) and isinstance(report.operation, StepFailure)
    assert report.operation.error.type == "TimeoutError"


async def test_a_blocked_thread_is_left_behind_and_the_attempt_fails() -> None:
    release = threading.Event()

    def blocks() -> str:
        release.wait(5)
        return "too late"

    async def function(ctx: Context) -> Any:
        return await ctx.step.run(reverb.Step("sync", timeout="20ms"), blocks)

    try:
        report, *_ = await drive(function, retry_later)
    finally:
        release.set()
    assert isinstance(report, StepReport) and isinstance(report.operation, StepFailure)
    assert report.operation.error.type == "StepTimeout"


@pytest.mark.parametrize("limit", ["5 parsecs", 0, "-1s"])
async def test_a_timeout_the_step_cannot_take_fails_the_run_at_once(limit: Any) -> None:
    async def function(ctx: Context) -> Any:
        return await ctx.step.run(reverb.Step("charge", timeout=limit), str)

    [final] = await drive(function)

    assert isinstance(final, RunFailed)
    assert (final.error.type, final.retriable) == ("StepArgumentError", False)
    assert "step 'charge'" in final.error.message


async def test_a_step_within_its_timeout_and_repeated_ids() -> None:
    async def function(ctx: Context) -> Any:
        first = await ctx.step.run(reverb.Step("add", timeout=5), lambda: 1)
        second = await ctx.step.run(reverb.Step("add"), lambda: 2)
        return [first, second]

    messages = await drive(function)

    assert [m.step_id for m in messages if isinstance(m, StepReport)] == ["add", "add:1"]
    assert messages[-1] == RunCompleted(b"[1,2]")
