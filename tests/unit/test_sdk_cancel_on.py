"""`reverb.CancelOn` and `@app.function(cancel_on=...)`: checked where they are written, with
messages that say what is wrong."""

from datetime import timedelta

import pytest

import reverb
from reverb import Context, event


def test_a_cancel_on_is_a_frozen_value_with_its_timeout_parsed() -> None:
    entry = reverb.CancelOn("order.cancelled", match="data.order_id", if_="true", timeout="1h")
    assert (entry.event, entry.match, entry.if_, entry.timeout) == (
        "order.cancelled",
        "data.order_id",
        "true",
        timedelta(hours=1),
    )
    assert entry == reverb.CancelOn("order.cancelled", "data.order_id", "true", 3600)
    with pytest.raises(AttributeError):
        entry.event = "other"  # type: ignore[misc]
    assert reverb.CancelOn("shop.closed").timeout is None


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"event": ""}, ValueError, "CancelOn event must be a non-empty event name"),
        ({"event": 7}, TypeError, "CancelOn event must be a string"),
        ({"event": "a\nb"}, ValueError, "is not an event name"),
        ({"event": "x" * 257}, ValueError, "is not an event name"),
        ({"event": "e", "match": "order_id"}, ValueError, "must name a field of the events' data"),
        ({"event": "e", "match": "data."}, ValueError, "must name a field of the events' data"),
        ({"event": "e", "match": 3}, TypeError, "CancelOn match must be a string"),
        ({"event": "e", "if_": " "}, ValueError, "non-empty CEL expression"),
        ({"event": "e", "if_": 1}, TypeError, "CancelOn if_ must be a CEL expression"),
        ({"event": "e", "if_": "a\x00"}, ValueError, "without NUL"),
        ({"event": "e", "timeout": "soon"}, ValueError, "CancelOn timeout"),
        ({"event": "e", "timeout": 0}, ValueError, "longer than zero"),
        ({"event": "e", "timeout": True}, TypeError, "CancelOn timeout must be a duration"),
        ({"event": "e", "timeout": [1]}, TypeError, "CancelOn timeout must be a duration"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(
    arguments: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        reverb.CancelOn(**arguments)  # type: ignore[arg-type]


def test_the_function_carries_its_cancel_on_in_order_once_each() -> None:
    app = reverb.App("shop")
    first = reverb.CancelOn("order.cancelled", match="data.order_id")
    second = reverb.CancelOn("shop.closed")

    @app.function("fulfil", trigger=event("order.created"), cancel_on=[first, second, first])
    async def fulfil(ctx: Context) -> None: ...

    @app.function("single", trigger=event("order.created"), cancel_on=second)
    async def single(ctx: Context) -> None: ...

    @app.function("none", trigger=event("order.created"))
    async def none(ctx: Context) -> None: ...

    assert reverb.FunctionDefinition.of(fulfil).cancel_on == (first, second)
    assert reverb.FunctionDefinition.of(single).cancel_on == (second,)
    assert reverb.FunctionDefinition.of(none).cancel_on == ()


def test_cancel_on_must_hold_cancel_on_values_and_at_most_five() -> None:
    app = reverb.App("shop")
    with pytest.raises(TypeError, match=r"function 'f': cancel_on\[1\] must be reverb.CancelOn"):
        app.function(
            "f",
            trigger=event("e"),
            cancel_on=[reverb.CancelOn("a"), "b"],  # type: ignore[list-item]
        )
    with pytest.raises(ValueError, match="function 'f' has 6 cancel_on events: at most 5"):
        app.function(
            "f", trigger=event("e"), cancel_on=[reverb.CancelOn(f"e{i}") for i in range(6)]
        )
