"""Declaring debounce, idempotency, singleton and batch: checked when declared, with
messages naming the function and the option."""

from datetime import timedelta

import pytest

import reverb
from reverb import Batch, Context, Debounce, FunctionDefinition, Singleton, event


async def handler(ctx: Context) -> None:
    return None


def declare(**options: object) -> FunctionDefinition:
    app = reverb.App("shop")

    async def function(ctx: Context) -> None:
        return None

    return FunctionDefinition.of(app.function("f", trigger=event("e"), **options)(function))  # type: ignore[arg-type]


def test_options_are_attached_to_the_definition() -> None:
    definition = declare(
        debounce=Debounce(period="5s", key="event.data.user", timeout="1m"),
        idempotency="event.data.order_id",
        singleton=Singleton(mode="cancel"),
    )
    assert definition.debounce == Debounce(
        timedelta(seconds=5), "event.data.user", timedelta(minutes=1)
    )
    assert definition.debounce is not None and definition.debounce.period == timedelta(seconds=5)
    assert definition.idempotency == "event.data.order_id"
    assert definition.singleton == Singleton(None, "cancel")
    assert definition.batch is None
    plain = declare()
    assert (plain.debounce, plain.idempotency, plain.singleton, plain.batch) == (None,) * 4


def test_a_batch_takes_a_size_and_a_timeout() -> None:
    batch = Batch(max_size=100, timeout="5s", key="event.data.tenant")
    assert (batch.max_size, batch.timeout, batch.key) == (
        100,
        timedelta(seconds=5),
        "event.data.tenant",
    )
    assert declare(batch=batch).batch == batch


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: Debounce(period="0s"), ValueError, "Debounce period must be longer than zero"),
        (lambda: Debounce(period="8d"), ValueError, "at most 7 days"),
        (lambda: Debounce(period="soon"), ValueError, "Debounce period"),
        (
            lambda: Debounce(period="1s", key=""),
            ValueError,
            "Debounce key must be a CEL expression",
        ),
        (lambda: Singleton(mode="queue"), ValueError, "mode must be 'skip' or 'cancel'"),  # type: ignore[arg-type]
        (lambda: Batch(max_size=0, timeout="1s"), ValueError, "must be 1 or more"),
        (lambda: Batch(max_size=1001, timeout="1s"), ValueError, "between 1 and 1000"),
        (lambda: Batch(max_size=True, timeout="1s"), TypeError, "max_size must be an int"),
        (lambda: Batch(max_size=10, timeout=-1), ValueError, "Batch timeout"),
    ],
)
def test_bad_options_are_refused_when_made(
    make: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"idempotency": 3}, ValueError, "function 'f': idempotency must be a CEL expression"),
        ({"debounce": "5s"}, TypeError, "function 'f': debounce must be reverb.Debounce"),
        ({"singleton": True}, TypeError, "function 'f': singleton must be reverb.Singleton"),
        (
            {"debounce": Debounce(period="1s"), "batch": Batch(max_size=2, timeout="1s")},
            ValueError,
            "function 'f': debounce and batch cannot be combined",
        ),
    ],
)
def test_bad_keywords_name_the_function(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        declare(**options)
