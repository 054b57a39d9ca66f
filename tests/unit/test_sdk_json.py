"""Outputs are strict JSON: what a function sees from a step is what a replay would see."""

import asyncio
import enum
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reverb
from reverb import Context, event
from reverb._execution import Execution
from reverb._json import UnserializableError, _check, _plain, decode, encode, round_trip
from reverb._protocol import (
    Ack,
    AckResult,
    Invocation,
    Message,
    RunCompleted,
    RunFailed,
    StepFailure,
    StepOutput,
    StepReport,
)


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -(2**63), 2**64 - 1, 1.5, "é", [1, "a"], {"a": {"b": [None]}}],
)
def test_json_values_round_trip(value: object) -> None:
    assert decode(encode(value)) == value


def test_tuples_become_lists() -> None:
    assert round_trip({"pair": (1, 2)}) == {"pair": [1, 2]}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({1, 2}, "type set at $"),
        ({"when": datetime(2030, 1, 1, tzinfo=UTC)}, "type datetime at $.when"),
        ({"items": [1, b"x"]}, "type bytes at $.items[1]"),
        ({1: "a"}, "dict key of type int at $"),
        ({"x": math.nan}, "nan at $.x"),
        ([math.inf], "inf at $[0]"),
        (object(), "type object at $"),
    ],
)
def test_non_json_values_are_refused_with_their_path(value: object, problem: str) -> None:
    with pytest.raises(UnserializableError, match=problem.replace("$", r"\$").replace("[", r"\[")):
        encode(value)


class Color(enum.IntEnum):
    RED = 1


class Name(str):
    pass


def test_subclasses_of_json_types_are_json_as_before() -> None:
    assert encode({"color": Color.RED, "name": Name("ada"), "flag": True}) == (
        b'{"color":1,"name":"ada","flag":true}'
    )


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),
    st.text(max_size=4),
    st.sampled_from([Color.RED, Name("n"), b"x", datetime(2030, 1, 1, tzinfo=UTC)]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=3) | st.integers(0, 3), inner, max_size=3),
    ),
    max_leaves=12,
)


@given(VALUES)
def test_the_fast_walk_accepts_only_what_the_checked_walk_accepts(value: object) -> None:
    """`encode` walks a value of exact built-in types without paths first; whatever that
    walk passes, the path-building check passes too, and `encode` refuses exactly what the
    check refuses."""
    try:
        _check(value, "$")
        refused = False
    except UnserializableError:
        refused = True
    if _plain(value):
        assert not refused
    if refused:
        with pytest.raises(UnserializableError):
            encode(value)
    else:
        assert encode(value) == orjson.dumps(value)


def test_integers_beyond_64_bits_are_refused() -> None:
    with pytest.raises(UnserializableError):
        encode(2**70)


def test_empty_bytes_decode_to_null() -> None:
    assert decode(b"") is None


Function = Callable[[Context], Awaitable[Any]]


async def run_once(function: Function) -> list[Message]:
    """One invocation of `function`, acking every report CONTINUE (or FAILED for failures)."""
    app = reverb.App("json-tests")
    app.function("f", trigger=event("e"))(function)
    definition = app.functions["f"]
    trigger = reverb.Event("e-1", "e", {}, datetime.now(UTC))
    execution = Execution(definition, Invocation("run", "f", (trigger,)))
    execution.start()
    messages: list[Message] = []
    async with asyncio.timeout(5):
        async for message in execution.messages():
            messages.append(message)
            if isinstance(message, StepReport):
                failed = isinstance(message.operation, StepFailure)
                result = AckResult.FAILED if failed else AckResult.CONTINUE
                execution.acknowledge(Ack(message.step_id, result))
    await execution.close()
    return messages


async def test_the_function_sees_a_step_output_as_a_replay_would() -> None:
    async def function(ctx: Context) -> list[Any]:
        value = await ctx.step.run("tuple", lambda: {"pair": (1, 2)})
        return [value, type(value["pair"]).__name__]

    report, final = await run_once(function)
    assert isinstance(report, StepReport)
    assert report.operation == StepOutput(b'{"pair":[1,2]}')
    assert final == RunCompleted(b'[{"pair":[1,2]},"list"]')


async def test_a_non_json_step_output_is_a_non_retriable_step_failure() -> None:
    seen: list[reverb.StepError] = []

    async def function(ctx: Context) -> str:
        try:
            await ctx.step.run("load-user", lambda: {"at": datetime.now(UTC)})
        except reverb.StepError as error:
            seen.append(error)
        return "handled"

    report, final = await run_once(function)
    assert isinstance(report, StepReport) and isinstance(report.operation, StepFailure)
    failure = report.operation
    assert not failure.retriable
    assert failure.error.type == "OutputUnserializableError"
    assert "'load-user'" in failure.error.message
    assert "datetime at $.at" in failure.error.message
    (error,) = seen
    assert (error.step_id, error.error_type) == ("load-user", "OutputUnserializableError")
    assert final == RunCompleted(b'"handled"')


async def test_a_non_json_return_value_fails_the_run_for_good() -> None:
    async def function(ctx: Context) -> object:
        return {"ids": {1, 2}}

    (final,) = await run_once(function)
    assert isinstance(final, RunFailed)
    assert not final.retriable
    assert final.error.type == "OutputUnserializableError"
    assert "function 'f' returned a value that is not JSON" in final.error.message
    assert "set at $.ids" in final.error.message
