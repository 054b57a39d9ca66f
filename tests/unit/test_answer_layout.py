"""A host frame's MAC content: the host encodes it from its own message, the worker from the
frame it received; for every kind of message the two must be the same bytes, or no answer
would verify."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from reverb.execution import (
    ErrorInfo,
    EventInput,
    InvokeFunction,
    LogLine,
    Message,
    RunCompleted,
    RunFailed,
    SendEvents,
    Sleep,
    StepFailure,
    StepOutput,
    StepReport,
    Suspended,
    WaitCondition,
    WaitForEvent,
)
from reverb.signing import Keyring, answer_base, answer_prefix
from reverb_contracts.v1 import function_host_pb2
from reverb_function_host.frames import Answer, Seal
from reverb_function_host.wire import messages, seals
from reverb_queue_worker.hosts import wire

TIMES = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
DURATIONS = st.none() | st.timedeltas(min_value=timedelta(days=-3), max_value=timedelta(days=3))
TEXT = st.text(max_size=12)
JSON_BYTES = st.binary(max_size=40)
ERRORS = st.builds(ErrorInfo, TEXT, TEXT, TEXT)
CONDITIONS = st.builds(WaitCondition, TEXT, st.none() | TEXT, st.none() | TEXT)
OPERATIONS = st.one_of(
    st.builds(StepOutput, JSON_BYTES),
    st.builds(StepFailure, ERRORS, st.booleans(), DURATIONS, st.booleans()),
    st.builds(Sleep, TIMES),
    st.builds(InvokeFunction, TEXT, JSON_BYTES, DURATIONS),
    st.builds(
        SendEvents,
        st.lists(
            st.builds(EventInput, TEXT, JSON_BYTES, st.none() | TEXT, st.none() | TIMES),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(
        WaitForEvent,
        st.lists(CONDITIONS, min_size=1, max_size=3).map(tuple),
        st.timedeltas(min_value=timedelta(days=-3), max_value=timedelta(days=3)),
        DURATIONS,
    ),
)
MESSAGES: st.SearchStrategy[Message] = st.one_of(
    st.builds(StepReport, TEXT, TEXT, TIMES, TIMES, OPERATIONS),
    st.builds(RunCompleted, JSON_BYTES),
    st.builds(RunFailed, ERRORS, st.booleans(), DURATIONS, st.booleans()),
    st.just(Suspended()),
    st.builds(
        LogLine,
        st.sampled_from(["debug", "info", "warning", "error"]),
        TEXT,
        TIMES,
        st.none() | TEXT,
        st.none() | JSON_BYTES,
    ),
)


@given(message=MESSAGES)
def test_the_host_and_the_worker_encode_every_answer_alike(message: Message) -> None:
    key = Keyring("k" * 32).current
    seal = Seal(key, b"n" * 16)
    (response,) = messages.session_responses([Answer(1, message, seal, 4)], 1 << 20, 1 << 20)
    (frame,) = response.frames
    received = function_host_pb2.HostFrame.FromString(frame.SerializeToString())
    content = wire.answer_content(received)
    assert content == seals.answer_content(message)
    assert key.verifies(answer_prefix(seal.nonce, 4) + content, frame.mac)


def test_the_answer_mac_is_the_mac_of_the_prefix_and_the_content() -> None:
    key = Keyring("k" * 32).current
    nonce = b"x" * 16
    assert key.answer_mac(answer_base(nonce), 7, b"content") == key.mac(
        answer_prefix(nonce, 7) + b"content"
    )
    assert key.answer_mac(answer_base(nonce), 7, b"content") != key.answer_mac(
        answer_base(nonce), 8, b"content"
    )


def test_every_field_of_a_wait_is_covered_by_its_mac() -> None:
    """A wait's condition, lookback and alternatives are signed: a frame altered in any of
    them on the way no longer verifies."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    first = WaitCondition("order.paid", "data.order_id", "async.data.total > 10")
    base = WaitForEvent((first,), timedelta(hours=1), timedelta(minutes=5))
    variants = [
        base,
        WaitForEvent((WaitCondition("order.paid", "data.order_id"),), base.timeout, base.lookback),
        WaitForEvent(base.conditions, base.timeout, None),
        WaitForEvent(base.conditions, base.timeout, timedelta(minutes=6)),
        WaitForEvent((first, WaitCondition("order.cancelled")), base.timeout, base.lookback),
        WaitForEvent(
            (first, WaitCondition("order.cancelled", "data.id")), base.timeout, base.lookback
        ),
        WaitForEvent((first, WaitCondition("order.cancelled", None, "true")), base.timeout, None),
    ]
    contents = {seals.answer_content(StepReport("s", "s", at, at, v)) for v in variants}
    assert len(contents) == len(variants)


def test_every_field_of_a_log_line_is_covered_by_its_mac() -> None:
    """A log frame is signed like every other frame (it takes its place in the sequence): a
    line altered on the way (its level, text, time, step or fields) no longer verifies."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    base = LogLine("info", "charged", at, "charge", b'{"amount":3}')
    variants = [
        base,
        LogLine("warning", base.message, at, base.step_id, base.fields),
        LogLine(base.level, "charged twice", at, base.step_id, base.fields),
        LogLine(base.level, base.message, at + timedelta(microseconds=1), "charge", base.fields),
        LogLine(base.level, base.message, at, None, base.fields),
        LogLine(base.level, base.message, at, "charge:1", base.fields),
        LogLine(base.level, base.message, at, base.step_id, b'{"amount":4}'),
        LogLine(base.level, base.message, at, base.step_id, None),
    ]
    contents = {seals.answer_content(variant) for variant in variants}
    assert len(contents) == len(variants)
