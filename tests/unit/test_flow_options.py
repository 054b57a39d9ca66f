"""A function's flow-control options survive their stored document, and say whether the
fan-out handles its events (`arrives`) or only its gates do."""

from datetime import timedelta

import pytest

from reverb_store.flow.options import (
    NO_FLOW,
    BatchOptions,
    ConcurrencyLimit,
    DebounceOptions,
    FlowOptions,
    SingletonOptions,
    check,
    parse,
)

EVERY_ARRIVAL = FlowOptions(
    concurrency=(ConcurrencyLimit(2, "event.data.tenant"),),
    idempotency="event.data.order_id",
    debounce=DebounceOptions(timedelta(seconds=5), "event.data.doc", timedelta(minutes=1)),
    singleton=SingletonOptions("event.data.user", "cancel"),
)


@pytest.mark.parametrize(
    "options",
    [
        EVERY_ARRIVAL,
        FlowOptions(batch=BatchOptions(100, timedelta(seconds=5), "event.data.table")),
        FlowOptions(debounce=DebounceOptions(timedelta(milliseconds=1))),
        FlowOptions(singleton=SingletonOptions()),
    ],
)
def test_options_survive_their_document(options: FlowOptions) -> None:
    text = options.to_json()
    assert text is not None
    assert parse(text) == options
    check("f", options)


def test_only_arrival_options_send_events_through_the_arrivals() -> None:
    assert EVERY_ARRIVAL.arrives()
    assert FlowOptions(idempotency="event.id").arrives()
    assert not FlowOptions(concurrency=(ConcurrencyLimit(1),)).arrives()
    assert not NO_FLOW.arrives() and not NO_FLOW and NO_FLOW.to_json() is None
    assert EVERY_ARRIVAL.arrival_keys() == {
        "idempotency": "event.data.order_id",
        "debounce.key": "event.data.doc",
        "singleton.key": "event.data.user",
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            FlowOptions(
                debounce=DebounceOptions(timedelta(seconds=1)),
                batch=BatchOptions(2, timedelta(seconds=1)),
            ),
            "function 'f': debounce and batch cannot be combined",
        ),
        (
            FlowOptions(debounce=DebounceOptions(timedelta(days=8))),
            "function 'f': debounce.period must be between 1ms and 7 days",
        ),
        (
            FlowOptions(batch=BatchOptions(1001, timedelta(seconds=1))),
            "function 'f': batch.max_size must be between 1 and 1,000",
        ),
        (
            FlowOptions(singleton=SingletonOptions(mode="queue")),  # type: ignore[arg-type]
            "function 'f': singleton.mode must be 'skip' or 'cancel'",
        ),
        (FlowOptions(idempotency="event.data.("), "function 'f': idempotency:"),
    ],
)
def test_options_that_cannot_be_enforced_are_refused(options: FlowOptions, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        check("f", options)
    assert message in str(raised.value)
