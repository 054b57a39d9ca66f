"""A step called with an argument it cannot take fails the run at once, naming the step."""

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

import reverb
from reverb import Context
from reverb._protocol import RunCompleted, RunFailed

from .test_sdk_execution import drive

Call = Callable[[reverb.Steps], Awaitable[Any]]


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda step: step.run("", lambda: 1), "step.run needs a step id"),
        (lambda step: step.run("  ", lambda: 1), "step.run needs a step id"),
        (lambda step: step.run(None, lambda: 1), "step.run needs a step id"),
        (lambda step: step.sleep(3, "1s"), "step.sleep needs a step id"),
        (lambda step: step.send_event("", "e"), "step.send_event needs a step id"),
        (lambda step: step.invoke("", "child"), "step.invoke needs a step id"),
        (lambda step: step.run("load", "not a function"), "step 'load': 'not a function'"),
        (lambda step: step.sleep("wait", "5 parsecs"), "step 'wait': '5 parsecs' is not a"),
        (lambda step: step.sleep("wait", -1), "step 'wait': duration -1 must be"),
        (lambda step: step.sleep("wait", timedelta(-1)), "step 'wait': duration"),
        (lambda step: step.sleep("wait", None), "step 'wait': None is not a duration"),
        (
            lambda step: step.sleep_until("later", datetime(2031, 1, 1)),
            "step 'later': sleep_until: 2031-01-01T00:00:00 has no time zone",
        ),
        (
            lambda step: step.sleep_until("later", 1234),
            "step 'later': sleep_until needs a datetime",
        ),
        (
            lambda step: step.invoke("child", "other", timeout="soon"),
            "step 'child': 'soon' is not a duration",
        ),
        (lambda step: step.invoke("child", ""), "step 'child': invoke needs a function id"),
        (lambda step: step.send_event("send", []), "step 'send': send_event needs"),
    ],
)
async def test_a_bad_argument_fails_the_run_for_good(call: Call, problem: str) -> None:
    async def function(ctx: Context) -> None:
        await call(ctx.step)

    (final,) = await drive(function)
    assert isinstance(final, RunFailed)
    assert (final.error.type, final.retriable) == ("StepArgumentError", False)
    assert problem in final.error.message


async def test_the_function_may_catch_it_as_a_value_error() -> None:
    async def function(ctx: Context) -> str:
        try:
            await ctx.step.sleep("wait", "5 parsecs")
        except ValueError as error:
            return type(error).__name__
        return "no error"

    (final,) = await drive(function)
    assert final == RunCompleted(b'"StepArgumentError"')
