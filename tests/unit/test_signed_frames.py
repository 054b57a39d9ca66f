"""A host frame of a signed invocation is the bytes the host serialized and a MAC over them:
the worker verifies the MAC before it parses, reads the same message as from an unsigned
frame, and refuses a frame moved to another place, another invocation or another key."""

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
from reverb_function_host.wire import messages
from reverb_queue_worker.hosts import protocol, wire

NONCE = b"n" * 16

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


def _over_the_wire(
    message: Message, seal: Seal | None, sequence: int = 0
) -> function_host_pb2.InvokeResponse:
    (response,) = messages.session_responses([Answer(7, message, seal, sequence)], 1 << 20, 1 << 20)
    return function_host_pb2.InvokeResponse.FromString(response.SerializeToString())


@given(message=MESSAGES, sequence=st.integers(min_value=0, max_value=2**40))
def test_a_signed_frame_verifies_and_says_what_an_unsigned_one_says(
    message: Message, sequence: int
) -> None:
    key = Keyring("k" * 32).current
    signed = _over_the_wire(message, Seal(key, NONCE), sequence)
    assert not signed.frames
    (received,) = wire.host_frames(signed)
    assert received.invocation_id == 7 and received.message is None
    assert key.answer_mac(answer_base(NONCE), sequence, received.data) == received.mac
    assert key.verifies(answer_prefix(NONCE, sequence) + received.data, received.mac)
    (plain,) = wire.host_frames(_over_the_wire(message, None))
    assert plain.mac == b"" and plain.message is not None
    assert wire.signed_message(received.data) == plain.message


def test_a_frame_verifies_only_at_its_place_in_its_invocation_under_its_key() -> None:
    key = Keyring("k" * 32).current
    at = datetime(2026, 1, 1, tzinfo=UTC)
    report = StepReport("charge", "charge", at, at, StepOutput(b'"ok"'))
    (received,) = wire.host_frames(_over_the_wire(report, Seal(key, NONCE), 3))
    assert key.answer_mac(answer_base(NONCE), 3, received.data) == received.mac
    # Another place in the same invocation, another invocation's nonce, another key:
    assert key.answer_mac(answer_base(NONCE), 4, received.data) != received.mac
    assert key.answer_mac(answer_base(b"m" * 16), 3, received.data) != received.mac
    other = Keyring("other").current
    assert other.answer_mac(answer_base(NONCE), 3, received.data) != received.mac


def test_a_frame_that_is_not_a_host_frame_is_a_protocol_error() -> None:
    message = wire.signed_message(b"\xff\xff\xff")
    assert isinstance(message, protocol.Failed)
    assert message.error.type == "ProtocolError"


def test_the_answer_mac_is_the_mac_of_the_prefix_and_the_frame() -> None:
    key = Keyring("k" * 32).current
    nonce = b"x" * 16
    assert key.answer_mac(answer_base(nonce), 7, b"frame") == key.mac(
        answer_prefix(nonce, 7) + b"frame"
    )
    # An invocation's MACs, the nonce absorbed once, are the same MACs frame after frame.
    macs = key.answers(nonce)
    for sequence in (7, 0, 7, 2**40):
        assert macs.mac(sequence, b"frame") == key.mac(answer_prefix(nonce, sequence) + b"frame")
    assert macs.mac(7, b"frame") != key.answers(b"y" * 16).mac(7, b"frame")
    assert key.start_mac(b"start") == key.mac(b"reverb-start-v2" + b"start")


def test_a_wait_and_a_log_line_keep_every_field_through_a_signed_frame() -> None:
    """What the MAC covers is what the worker reads: a wait's condition, lookback and
    alternatives, and a log line's level, text, time, step and fields, come out of the
    signed bytes as they went in."""
    key = Keyring("k" * 32).current
    at = datetime(2026, 1, 1, tzinfo=UTC)
    wait = WaitForEvent(
        (
            WaitCondition("order.paid", "data.order_id", "async.data.total > 10"),
            WaitCondition("order.cancelled", None, "true"),
        ),
        timedelta(hours=1),
        timedelta(minutes=5),
    )
    line = LogLine("warning", "charged", at, "charge", b'{"amount":3}')
    for message in (StepReport("s", "s", at, at, wait), line):
        (received,) = wire.host_frames(_over_the_wire(message, Seal(key, NONCE)))
        read = wire.signed_message(received.data)
        (plain,) = wire.host_frames(_over_the_wire(message, None))
        assert read == plain.message
    signed = _over_the_wire(StepReport("s", "s", at, at, wait), Seal(key, NONCE))
    (received,) = wire.host_frames(signed)
    report = wire.signed_message(received.data)
    assert isinstance(report, protocol.StepReport)
    assert isinstance(report.operation, protocol.WaitForEvent)
    assert [c.condition for c in report.operation.conditions] == ["async.data.total > 10", "true"]
    assert report.operation.lookback == timedelta(minutes=5)
