"""Properties of the glue between events and CEL in waits: how a `match` path reads an
event's data, and how an `if_` condition sees the trigger (`event`) and the candidate
(`async`)."""

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reverb_store.execution import EventRecord, WaitCondition, WaitRefused
from reverb_store.execution.waits import cel_event, match_path, prepare
from reverb_store.execution.waits import holds as _holds
from reverb_store.expressions import compile_expression
from reverb_store.ids import EventId

WHAT = "function 'f', step 's'"
# Data keys as users write them in a match path: no dot, not blank.
KEYS = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters=".\x00"), min_size=1
).filter(lambda key: key.strip() == key and key != "")
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=8,
)
TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def nest(path: list[str], leaf: object) -> dict[str, object]:
    data: object = leaf
    for key in reversed(path):
        data = {key: data}
    assert isinstance(data, dict)
    return data


def trigger(data: object) -> EventRecord:
    return EventRecord(
        EventId("t"), "order.created", orjson.dumps(data).decode(), datetime.now(UTC)
    )


def holds(source: str, trigger_data: object, candidate_data: object, ts: datetime) -> bool:
    expression = compile_expression(source, variables=frozenset({"event", "async"}), what=WHAT)
    return _holds(
        expression,
        cel_event("t", "order.created", trigger_data, ts),
        cel_event("c", "order.paid", candidate_data, ts),
    )


@given(path=st.lists(KEYS, min_size=1, max_size=4), leaf=JSON)
def test_a_match_path_reads_the_value_the_trigger_has_there(path: list[str], leaf: object) -> None:
    match = "data." + ".".join(path)
    assert match_path(match, WHAT) == tuple(path)
    (condition,) = prepare([WaitCondition("order.paid", match)], trigger(nest(path, leaf)), WHAT)
    assert condition.path == tuple(path)
    # The stored match value is the trigger's value as JSON: the same value compares
    # equal in PostgreSQL's jsonb, where candidates are looked up.
    assert orjson.loads(condition.value) == leaf


@given(path=st.lists(KEYS, min_size=1, max_size=3), other=KEYS, leaf=JSON)
def test_a_match_path_the_trigger_lacks_is_refused_naming_function_and_step(
    path: list[str], other: str, leaf: object
) -> None:
    data = nest(path, leaf)
    if other in data:
        return
    match = "data." + ".".join([other, *path])
    with pytest.raises(WaitRefused, match="function 'f', step 's': match"):
        prepare([WaitCondition("order.paid", match)], trigger(data), WHAT)


@given(match=st.text(max_size=20))
def test_a_match_outside_the_data_is_refused(match: str) -> None:
    parts = match.split(".")
    if len(parts) >= 2 and parts[0] == "data" and all(part.strip() for part in parts):
        assert match_path(match, WHAT) == tuple(parts[1:])
    else:
        with pytest.raises(WaitRefused, match="must name a field of the events' data"):
            match_path(match, WHAT)


@given(
    minimum=st.integers(min_value=-(10**12), max_value=10**12),
    amount=st.integers(min_value=-(10**12), max_value=10**12),
    ts=TIMES,
)
def test_a_condition_compares_the_candidate_with_the_trigger(
    minimum: int, amount: int, ts: datetime
) -> None:
    source = "async.data.amount >= event.data.minimum"
    assert holds(source, {"minimum": minimum}, {"amount": amount}, ts) == (amount >= minimum)


@given(left=st.text(), right=st.text(), ts=TIMES)
def test_text_fields_are_equal_in_a_condition_exactly_when_they_are_equal(
    left: str, right: str, ts: datetime
) -> None:
    source = "async.data.id == event.data.id"
    assert holds(source, {"id": left}, {"id": right}, ts) == (left == right)
    assert holds(source, {"id": left}, {"id": left}, ts)


@given(data=st.dictionaries(KEYS, JSON, max_size=4), ts=TIMES)
def test_a_condition_over_a_missing_field_is_no_match_never_an_error(
    data: dict[str, object], ts: datetime
) -> None:
    if "absent" in data:
        return
    assert not holds("async.data.absent == 1", {}, data, ts)
    assert not holds("event.data.absent > async.data.absent", data, data, ts)


@given(trigger_ts=TIMES, candidate_ts=TIMES)
def test_event_times_are_unix_milliseconds_in_a_condition(
    trigger_ts: datetime, candidate_ts: datetime
) -> None:
    expression = compile_expression(
        "async.ts >= event.ts", variables=frozenset({"event", "async"}), what=WHAT
    )
    trigger_event = cel_event("t", "a", {}, trigger_ts)
    candidate = cel_event("c", "b", {}, candidate_ts)
    assert trigger_event["ts"] == int(trigger_ts.timestamp() * 1000)
    expected = int(candidate_ts.timestamp() * 1000) >= int(trigger_ts.timestamp() * 1000)
    assert _holds(expression, trigger_event, candidate) == expected


@given(source=st.text(max_size=30))
def test_a_condition_either_compiles_or_is_refused_naming_function_and_step(source: str) -> None:
    try:
        prepare([WaitCondition("order.paid", "", source)], None, WHAT)
    except WaitRefused as refused:
        assert str(refused).startswith(WHAT)
