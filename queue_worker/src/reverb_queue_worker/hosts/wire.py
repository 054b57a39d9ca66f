"""The one module that touches protobuf: Session streams and message conversion.

`open_session` wraps a grpc.aio stream in `SessionStream`, which speaks the
domain types of `protocol`: batches of (invocation id, message). gRPC failures
surface as `HostStreamError`. With a keyring, each Start is sent as its bytes and their
MAC, and the host's signed frames come as their bytes and MACs, for the session to verify
before they are parsed (docs/architecture.md, "Signed invocations").
"""

import asyncio
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import grpc
import orjson
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from reverb.engine_errors import PROTOCOL_ERROR, UNTYPED
from reverb.execution import LOG_FIELDS_LIMIT, LOG_MESSAGE_LIMIT
from reverb.signing import Keyring
from reverb_contracts.v1 import common_pb2, function_host_pb2, function_host_pb2_grpc
from reverb_queue_worker.hosts import protocol
from reverb_store import NewEvent
from reverb_store.execution import ErrorRecord, MemoEntry, StepTiming
from reverb_store.ids import FunctionId, StepId
from reverb_store.logs import Level


class HostStreamError(Exception):
    """The Invoke stream failed; `code` is the gRPC status name, e.g. "UNAVAILABLE"."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class StartTooLarge(HostStreamError):
    """A Start larger than the host (or the worker) accepts: it can never be sent, so the
    worker fails its run instead (sending it would break the whole session)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            "RESOURCE_EXHAUSTED",
            f"the run's Start message ({size} bytes: its events and memo) is larger than"
            f" the function host accepts ({limit} bytes)",
        )


# The initial metadata of an Invoke stream in which a host says how large a message it
# accepts (`reverb_function_host.wire.service`).
RECEIVE_LIMIT_KEY = "reverb-max-receive-bytes"
# What a host that does not say accepts: gRPC's default receive limit.
DEFAULT_RECEIVE_LIMIT = 4 * 1024 * 1024
# Room a Start frame needs in its message beyond its own size: the frame's own fields and
# the Start's signature (key id, time, nonce, app id, host address, MAC).
_FRAME_OVERHEAD = 1024


_ACK_RESULTS = {
    protocol.AckResult.CONTINUE: function_host_pb2.ACK_RESULT_CONTINUE,
    protocol.AckResult.PENDING: function_host_pb2.ACK_RESULT_PENDING,
    protocol.AckResult.FAILED: function_host_pb2.ACK_RESULT_FAILED,
    protocol.AckResult.RETRY_LATER: function_host_pb2.ACK_RESULT_RETRY_LATER,
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _set_timestamp(message: Timestamp, value: datetime) -> None:
    """Exact seconds and nanos of an aware datetime (Timestamp.FromDatetime is pure Python
    and several times slower)."""
    elapsed = value - _EPOCH
    message.seconds = elapsed.days * 86_400 + elapsed.seconds
    message.nanos = elapsed.microseconds * 1_000


def _datetime(message: Timestamp) -> datetime:
    return _EPOCH + timedelta(0, message.seconds, message.nanos // 1_000)


def _error_to_wire(error: ErrorRecord) -> common_pb2.ErrorInfo:
    return common_pb2.ErrorInfo(type=error.type, message=error.message, stack=error.stack)


def _error_from_wire(error: common_pb2.ErrorInfo) -> ErrorRecord:
    return ErrorRecord(error.type or UNTYPED.name, error.message, error.stack)


def _json(data: bytes) -> str:
    """JSON bytes as text; an empty payload means `null`."""
    return data.decode("utf-8", errors="replace") if data else "null"


def _memo_to_wire(entry: MemoEntry) -> function_host_pb2.MemoizedStep:
    if entry.pending:
        return function_host_pb2.MemoizedStep(
            step_id=entry.step_id, pending=function_host_pb2.Pending()
        )
    if entry.error is not None:
        return function_host_pb2.MemoizedStep(
            step_id=entry.step_id, error=_error_to_wire(entry.error)
        )
    output = (entry.output if entry.output is not None else "null").encode()
    return function_host_pb2.MemoizedStep(step_id=entry.step_id, output=output)


def _fill_start(message: function_host_pb2.Start, start: protocol.Start) -> None:
    message.run_id = start.run_id
    message.function_id = start.function_id
    for event in start.events:
        added = message.events.add(id=event.id, name=event.name, data=event.data.encode())
        _set_timestamp(added.ts, event.ts)
    message.memo.extend(_memo_to_wire(entry) for entry in start.memo)
    message.attempt = start.attempt
    message.traceparent = start.traceparent or ""
    for step_id, failures in start.step_attempts.items():
        message.step_attempts[step_id] = failures
    _set_timestamp(message.deadline, start.deadline)
    if not start.log_lines:
        message.omit_log_lines = True


def _signed_start(
    message: function_host_pb2.SignedStart,
    start: protocol.Start,
    opening: protocol.Opening,
    keyring: Keyring,
    now_ms: int,
) -> None:
    """Fill `message`: the Start, its `auth` set, as bytes, and their MAC with the current
    key (docs/architecture.md, "Signed invocations")."""
    key = keyring.current
    plain = function_host_pb2.Start()
    _fill_start(plain, start)
    auth = plain.auth
    auth.signed_at_ms = now_ms
    auth.nonce = opening.nonce
    auth.app_id = opening.app_id
    auth.host_address = opening.host_address
    data = plain.SerializeToString()
    message.start = data
    message.key_id = key.id
    message.mac = key.start_mac(data)


def _fill_ack(message: function_host_pb2.Ack, ack: protocol.Ack) -> None:
    message.step_id = ack.step_id
    message.result = _ACK_RESULTS[ack.result]
    if ack.output is not None:
        message.output = ack.output.encode()
    if ack.error is not None:
        message.error.CopyFrom(_error_to_wire(ack.error))


def start_size(start: protocol.Start, exact_from: int = 1024 * 1024) -> int:
    """About the encoded size of a Start frame (a memo can be large); exact from about
    `exact_from` bytes on."""
    estimate = 256 + sum(len(event.data) + len(event.name) + 64 for event in start.events)
    estimate += sum(len(entry.output or "") + len(entry.step_id) + 16 for entry in start.memo)
    if estimate < exact_from:
        return estimate
    frame = function_host_pb2.WorkerFrame(invocation_id=1)
    _fill_start(frame.start, start)
    return frame.ByteSize()


def check_start(start: protocol.Start, limit: int) -> None:
    """Raise StartTooLarge if `start` cannot fit in a message of `limit` bytes."""
    size = start_size(start, exact_from=min(1024 * 1024, limit // 2))
    if size + _FRAME_OVERHEAD > limit:
        raise StartTooLarge(size, limit)


def _size(message: protocol.WorkerMessage) -> int:
    """About a frame's encoded size, for splitting batches."""
    if isinstance(message, protocol.Ack):
        return 64 + len(message.step_id) + len(message.output or "")
    if isinstance(message, protocol.Opening):
        return start_size(message.start) + 128
    return 16


def session_requests(
    frames: Sequence[tuple[int, protocol.WorkerMessage]],
    limit: int,
    keyring: Keyring | None = None,
) -> list[function_host_pb2.InvokeRequest]:
    """`frames` in as few requests as fit in about `limit` bytes each (a bigger frame goes
    alone); with a keyring, each Start is signed with its current key."""
    now_ms = time.time_ns() // 1_000_000
    requests = [function_host_pb2.InvokeRequest()]
    size = 0
    for invocation_id, message in frames:
        frame_size = _size(message)
        if size and size + frame_size > limit:
            requests.append(function_host_pb2.InvokeRequest())
            size = 0
        size += frame_size
        frame = requests[-1].frames.add()
        frame.invocation_id = invocation_id
        if isinstance(message, protocol.Ack):
            _fill_ack(frame.ack, message)
        elif isinstance(message, protocol.Opening):
            if keyring is None:
                _fill_start(frame.start, message.start)
            else:
                _signed_start(frame.signed_start, message.start, message, keyring, now_ms)
        else:
            frame.cancel.SetInParent()
    return requests


def _event_input(event: function_host_pb2.EventInput) -> NewEvent:
    return NewEvent(
        name=event.name,
        data=_json(event.data) if event.data else "{}",
        id=event.id or None,
        ts=_datetime(event.ts) if event.HasField("ts") else None,
    )


def _operation(report: function_host_pb2.StepResult) -> protocol.StepOperation:
    kind = report.WhichOneof("op")
    if kind == "output":
        return protocol.Output(_json(report.output))
    if kind == "failure":
        failure = report.failure
        return protocol.Failure(
            _error_from_wire(failure.error),
            failure.retriable,
            failure.retry_after.ToTimedelta() if failure.HasField("retry_after") else None,
            failure.pause_key,
        )
    if kind == "sleep":
        return protocol.Sleep(_datetime(report.sleep.wake_at))
    if kind == "invoke":
        invoke = report.invoke
        return protocol.Invoke(
            FunctionId(invoke.function_id),
            _json(invoke.data) if invoke.data else "{}",
            invoke.timeout.ToTimedelta() if invoke.HasField("timeout") else None,
        )
    if kind == "send_events":
        return protocol.SendEvents(tuple(_event_input(e) for e in report.send_events.events))
    if kind == "wait_for_event":
        wait = report.wait_for_event
        conditions = [protocol.WaitCondition(wait.event, wait.match, wait.condition)]
        conditions += (
            protocol.WaitCondition(other.event, other.match, other.condition)
            for other in wait.alternatives
        )
        return protocol.WaitForEvent(
            tuple(conditions),
            wait.timeout.ToTimedelta() if wait.HasField("timeout") else None,
            wait.lookback.ToTimedelta() if wait.HasField("lookback") else None,
        )
    return protocol.Failure(
        ErrorRecord(PROTOCOL_ERROR.name, "the host reported a step without an operation"),
        retriable=PROTOCOL_ERROR.retriable,
        retry_after=None,
    )


class ReceivedFrame(NamedTuple):
    """One host frame: its message (None for a signed frame: it is parsed once its MAC
    held, by `signed_message`), or the bytes and MAC of a signed one."""

    invocation_id: int
    message: protocol.HostMessage | None
    # A signed frame's serialized HostFrame and its MAC; b"" for an unsigned frame.
    data: bytes
    mac: bytes


def host_frames(response: function_host_pb2.InvokeResponse) -> list[ReceivedFrame]:
    """The frames a InvokeResponse carries: the unsigned ones parsed, the signed ones as
    their bytes and MACs (each invocation's frames in order)."""
    received = [
        ReceivedFrame(frame.invocation_id, host_message(frame), b"", b"")
        for frame in response.frames
    ]
    received += (
        ReceivedFrame(signed.invocation_id, None, signed.frame, signed.mac)
        for signed in response.signed
    )
    return received


def signed_message(data: bytes) -> protocol.HostMessage:
    """The message of a signed frame's bytes (whose MAC held)."""
    try:
        frame = function_host_pb2.HostFrame.FromString(data)
    except DecodeError:
        return protocol.Failed(
            ErrorRecord(PROTOCOL_ERROR.name, "the host sent a frame that is not a HostFrame"),
            retriable=PROTOCOL_ERROR.retriable,
        )
    return host_message(frame)


def _time_of(message: Any, field: str) -> datetime | None:
    """An optional Timestamp field as a datetime; None when unset."""
    if not message.HasField(field):
        return None
    value = getattr(message, field)
    return _EPOCH + timedelta(0, value.seconds, value.nanos // 1_000)


def host_message(frame: function_host_pb2.HostFrame) -> protocol.HostMessage:
    """What one host frame says."""
    kind = frame.WhichOneof("message")
    if kind == "step":
        report = frame.step
        step_id = report.step_id
        timing = StepTiming(
            StepId(step_id),
            report.name or step_id,
            _time_of(report, "started_at"),
            _time_of(report, "ended_at"),
        )
        return protocol.StepReport(timing, _operation(report))
    if kind == "log":
        log = frame.log
        return log_line(log.level, log.message, _time_of(log, "at"), log.step_id, log.fields)
    return _final_message(frame, kind)


_LOG_LEVELS: dict[int, Level] = {
    function_host_pb2.LOG_LEVEL_DEBUG: "debug",
    function_host_pb2.LOG_LEVEL_INFO: "info",
    function_host_pb2.LOG_LEVEL_WARNING: "warning",
    function_host_pb2.LOG_LEVEL_ERROR: "error",
}
# Nesting a log line's fields may have (MongoDB refuses documents nested past 100).
LOG_FIELDS_DEPTH = 32


def log_line(
    level: int, message: str, at: datetime | None, step_id: str, fields: bytes
) -> protocol.LogLine:
    """A log frame's line, made storable whatever the host sent: the message cut at
    LOG_MESSAGE_LIMIT characters, fields kept only as a JSON object within LOG_FIELDS_LIMIT
    bytes and LOG_FIELDS_DEPTH levels, no NUL anywhere (PostgreSQL stores none), an unknown
    level read as info."""
    if len(message) > LOG_MESSAGE_LIMIT:
        message = message[: LOG_MESSAGE_LIMIT - 1] + "…"
    if "\x00" in message:
        message = message.replace("\x00", "\ufffd")
    if "\x00" in step_id:
        step_id = step_id.replace("\x00", "\ufffd")
    return protocol.LogLine(
        _LOG_LEVELS.get(level, "info"),
        message,
        at,
        StepId(step_id) if step_id else None,
        _log_fields(fields) if fields else None,
    )


def _log_fields(data: bytes) -> str:
    if len(data) > LOG_FIELDS_LIMIT:
        return _dropped(f"{len(data)} bytes of fields, more than the {LOG_FIELDS_LIMIT} kept")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _dropped("the fields are not JSON")
    if not isinstance(value, dict):
        return _dropped("the fields are not a JSON object")
    if data.count(b"[") + data.count(b"{") > LOG_FIELDS_DEPTH and _too_deep(value):
        return _dropped(f"the fields nest deeper than {LOG_FIELDS_DEPTH} levels")
    if b"\\u0000" in data:
        return orjson.dumps(_without_nul(value)).decode()
    return data.decode()


def _dropped(why: str) -> str:
    return orjson.dumps({"fields_dropped": why}).decode()


def _too_deep(value: object) -> bool:
    """Whether `value` nests more than LOG_FIELDS_DEPTH containers (without recursion)."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()  # a dict or a list
        if depth > LOG_FIELDS_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else item
        assert isinstance(children, Iterable)
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _without_nul(value: object) -> object:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def _final_message(frame: function_host_pb2.HostFrame, kind: str | None) -> protocol.HostMessage:
    if kind == "completed":
        return protocol.Completed(_json(frame.completed.output))
    if kind == "failed":
        failed = frame.failed
        return protocol.Failed(
            _error_from_wire(failed.error),
            failed.retriable,
            failed.retry_after.ToTimedelta() if failed.HasField("retry_after") else None,
            failed.pause_key,
        )
    if kind == "suspended":
        return protocol.Suspended()
    return protocol.Failed(
        ErrorRecord(PROTOCOL_ERROR.name, "the host sent an empty frame"),
        retriable=PROTOCOL_ERROR.retriable,
    )


def _raise_if_call_cancelled() -> None:
    """grpc.aio raises CancelledError in readers and writers of a call cancelled locally.

    When the current task itself is not being cancelled, that is what happened:
    report it as the stream's end rather than as a cancellation of the task.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling() == 0:
        raise HostStreamError("CANCELLED", "the stream was cancelled") from None


class SessionStream:
    """One FunctionHost.Session call: one writer and one reader at a time."""

    def __init__(
        self,
        call: grpc.aio.StreamStreamCall[
            function_host_pb2.InvokeRequest, function_host_pb2.InvokeResponse
        ],
    ) -> None:
        self._call = call

    async def write(self, request: function_host_pb2.InvokeRequest) -> None:
        try:
            await self._call.write(request)
        except grpc.aio.AioRpcError as error:
            raise HostStreamError(error.code().name, error.details() or "") from error
        except asyncio.InvalidStateError as error:
            raise await self._ended() from error
        except asyncio.CancelledError:
            _raise_if_call_cancelled()
            raise

    async def read(self) -> list[ReceivedFrame] | None:
        """The host's next batch of frames; None when the host ended the session."""
        try:
            response = await self._call.read()
        except grpc.aio.AioRpcError as error:
            raise HostStreamError(error.code().name, error.details() or "") from error
        except asyncio.InvalidStateError as error:
            raise await self._ended() from error
        except asyncio.CancelledError:
            _raise_if_call_cancelled()
            raise
        if response is grpc.aio.EOF:
            return None
        assert isinstance(response, function_host_pb2.InvokeResponse)
        return host_frames(response)

    async def receive_limit(self) -> int:
        """The largest message the host accepts, as its initial metadata says (gRPC's
        default when it does not say, or the call failed before it could)."""
        try:
            metadata = await self._call.initial_metadata()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return DEFAULT_RECEIVE_LIMIT
        except asyncio.CancelledError:
            _raise_if_call_cancelled()
            raise
        value = metadata.get(RECEIVE_LIMIT_KEY) if metadata is not None else None
        if isinstance(value, str) and value.isdigit() and int(value) > 0:
            return int(value)
        return DEFAULT_RECEIVE_LIMIT

    async def _ended(self) -> HostStreamError:
        """Why the call is over, for a write or read after it ended: the host's status (a
        refused signature is UNAUTHENTICATED, whichever of the writer and reader sees the
        end first), or CANCELLED when it is not over but closed here."""
        if not self._call.done():
            return HostStreamError("CANCELLED", "the stream is closed")
        code = await self._call.code()
        details = await self._call.details()
        return HostStreamError(code.name, details or "the stream is closed")

    def cancel(self) -> None:
        self._call.cancel()

    async def close(self, grace: float = 5.0) -> None:
        """Half-close, give the host `grace` seconds to end the call, then cancel it."""
        try:
            await self._call.done_writing()
            await asyncio.wait_for(self._call.code(), grace)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, TimeoutError):
            pass
        finally:
            self._call.cancel()


def open_session(channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]]) -> SessionStream:
    """Start a Session call on `channel` (nothing is sent until the first write)."""
    stub = function_host_pb2_grpc.FunctionHostStub(channel)
    return SessionStream(stub.Invoke(metadata=tuple(metadata)))
