"""The canonical bytes of signed invocations, read from reverb.v1 messages.

What a Start's MAC covers (read from the Start), and what the MAC of each frame the host
answers with covers after `reverb.signing.answer_prefix` (from the host's own message,
in the layout of `reverb.signing`; docs/architecture.md, "Signed invocations"). The queue
worker's wire module builds the same bytes from the messages it receives.
"""

from datetime import UTC, datetime, timedelta

from reverb import signing
from reverb.execution import (
    InvokeFunction,
    LogLine,
    Message,
    RunCompleted,
    RunFailed,
    SendEvents,
    Sleep,
    StepFailure,
    StepOperation,
    StepOutput,
    StepReport,
    Suspended,
    WaitForEvent,
)
from reverb.signing import START_DOMAIN, Canonical
from reverb_contracts.v1 import function_host_pb2
from reverb_function_host.authentication import StartAuth


def start_auth(message: function_host_pb2.Start) -> StartAuth | None:
    """The Start's `auth`, None when it has none."""
    if not message.HasField("auth"):
        return None
    auth = message.auth
    return StartAuth(
        auth.key_id, auth.signed_at_ms, auth.nonce, auth.app_id, auth.host_address, auth.mac
    )


def start_signed_bytes(message: function_host_pb2.Start) -> bytes:
    """What a Start's MAC covers."""
    events = Canonical(b"").integer(len(message.events))
    for event in message.events:
        events.text(event.id).text(event.name).blob(event.data)
        events.time(event.ts.seconds, event.ts.nanos)
    memo = Canonical(b"").integer(len(message.memo))
    for step in message.memo:
        memo.text(step.step_id)
        result = step.WhichOneof("result")
        if result == "error":
            error = step.error
            memo.integer(2).text(error.type).text(error.message).text(error.stack)
        elif result == "pending":
            memo.integer(3)
        else:
            memo.integer(1).blob(step.output)
    auth = message.auth
    return (
        Canonical(START_DOMAIN)
        .text(auth.key_id)
        .integer(auth.signed_at_ms)
        .blob(auth.nonce)
        .text(auth.app_id)
        .text(auth.host_address)
        .text(message.run_id)
        .text(message.function_id)
        .integer(message.attempt)
        .raw(events.digest())
        .raw(memo.digest())
        .to_bytes()
    )


def answer_content(message: Message) -> bytes:
    """The canonical content of the frame the host sends for `message` (its MAC covers the
    answer prefix, then this), from the host's own values: the same bytes the worker reads
    back from the frame's fields (`messages` writes them with the same conversions), without
    reading the message it just filled."""
    match message:
        case StepReport():
            return signing.step_answer(
                message.step_id,
                message.name,
                timestamp_parts(message.started_at),
                timestamp_parts(message.ended_at),
                _operation_content(message.operation),
            )
        case RunCompleted(output=output):
            return signing.completed_answer(output)
        case RunFailed(error=error, retriable=retriable, retry_after=retry_after):
            return signing.failed_answer(
                error.type,
                error.message,
                error.stack,
                retriable,
                _duration(retry_after),
                message.pause_key,
            )
        case Suspended():
            return signing.suspended_answer()
        case LogLine(level=level, message=text, at=at, step_id=step_id, fields=fields):
            return signing.log_answer(
                LOG_LEVEL_NUMBERS[level], text, timestamp_parts(at), step_id or "", fields or b""
            )


def _operation_content(operation: StepOperation) -> bytes:
    match operation:
        case StepOutput(output=output):
            return signing.output_operation(output)
        case StepFailure(error=error, retriable=retriable, retry_after=retry_after):
            return signing.failure_operation(
                error.type,
                error.message,
                error.stack,
                retriable,
                _duration(retry_after),
                operation.pause_key,
            )
        case Sleep(wake_at=wake_at):
            return signing.sleep_operation(timestamp_parts(wake_at))
        case InvokeFunction(function_id=function_id, data=data, timeout=timeout):
            return signing.invoke_operation(function_id, data, _duration(timeout))
        case SendEvents(events=events):
            return signing.send_events_operation(
                [
                    (
                        event.name,
                        event.data,
                        event.id or "",
                        None if event.ts is None else timestamp_parts(event.ts),
                    )
                    for event in events
                ]
            )
        case WaitForEvent(conditions=conditions, timeout=timeout, lookback=lookback):
            first, *others = conditions
            return signing.wait_for_event_operation(
                first.event,
                first.match or "",
                _duration(timeout),
                first.condition or "",
                _duration(lookback),
                [(other.event, other.match or "", other.condition or "") for other in others],
            )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The LogLevel enum's numbers (function_host.proto), as the answer's MAC covers them.
LOG_LEVEL_NUMBERS = {
    "debug": function_host_pb2.LOG_LEVEL_DEBUG,
    "info": function_host_pb2.LOG_LEVEL_INFO,
    "warning": function_host_pb2.LOG_LEVEL_WARNING,
    "error": function_host_pb2.LOG_LEVEL_ERROR,
}


def timestamp_parts(value: datetime) -> signing.Time:
    """An aware datetime as a Timestamp's exact (seconds, nanos): what `messages` writes."""
    elapsed = value - _EPOCH
    return (elapsed.days * 86_400 + elapsed.seconds, elapsed.microseconds * 1_000)


def _duration(value: timedelta | None) -> signing.Time | None:
    """A timedelta as Duration.FromTimedelta writes it: seconds and nanos of one sign."""
    if value is None:
        return None
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    seconds, rest = divmod(abs(micros), 1_000_000)
    sign = -1 if micros < 0 else 1
    return (sign * seconds, sign * rest * 1_000)
