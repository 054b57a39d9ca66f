"""reverb.v1 messages <-> the SDK's dataclasses and the host's frames (`frames`)."""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

import reverb
from reverb.engine_errors import OUTPUT_TOO_LARGE
from reverb.execution import (
    Ack,
    AckResult,
    ErrorInfo,
    Invocation,
    InvokeFunction,
    LogLine,
    MemoizedStep,
    Message,
    RunCompleted,
    RunFailed,
    SendEvents,
    Sleep,
    StepFailure,
    StepOutput,
    StepReport,
    Suspended,
    WaitForEvent,
)
from reverb.schedules import CatchUp, Overlap
from reverb_contracts.v1 import common_pb2, function_host_pb2, ingress_pb2
from reverb_function_host.authentication import StartAuth, StartCheck
from reverb_function_host.frames import (
    Answer,
    BadFrame,
    Begin,
    Cancel,
    Refused,
    Seal,
    WorkerMessage,
)


def worker_frames(
    request: function_host_pb2.InvokeRequest, check: StartCheck
) -> list[tuple[int, WorkerMessage]]:
    """The (invocation id, message) pairs a InvokeRequest carries, in order; each Start is
    checked by `check`, a signed one's MAC before its bytes are parsed (a refused Start is
    `Refused`)."""
    return [(frame.invocation_id, _worker_message(frame, check)) for frame in request.frames]


def _worker_message(frame: function_host_pb2.WorkerFrame, check: StartCheck) -> WorkerMessage:
    kind = frame.WhichOneof("message")
    try:
        if kind == "ack":
            return _ack(frame.ack)
        if kind == "signed_start":
            return _signed_start(frame.signed_start, check)
        if kind == "start":
            start = frame.start
            refused = check.unsigned(start.run_id)
            return refused if refused is not None else _begin(start, None)
        if kind == "cancel":
            return Cancel()
    except BadFrame as error:
        return error
    return BadFrame("a frame without a message")


def _signed_start(signed: function_host_pb2.SignedStart, check: StartCheck) -> WorkerMessage:
    """A signed Start: its MAC over the bytes first; they are parsed once it holds (and,
    refused, only to name the run in the log and sign the answer with its nonce)."""
    data = signed.start
    verdict = check.verify(signed.key_id, data, signed.mac)
    try:
        start = function_host_pb2.Start.FromString(data)
    except DecodeError:
        start = None
    if isinstance(verdict, str):
        seal = check.refusal_seal(signed.key_id, start.auth.nonce if start is not None else b"")
        return check.refuse(start.run_id if start is not None else "", verdict, seal)
    if start is None:
        raise BadFrame("SignedStart.start is not a Start")
    seal = None
    if verdict is not None:
        auth = start.auth
        admitted = check.admit(
            start.run_id,
            StartAuth(auth.signed_at_ms, auth.nonce, auth.app_id, auth.host_address),
            verdict,
        )
        if isinstance(admitted, Refused):
            return admitted
        seal = admitted
    try:
        return _begin(start, seal)
    except BadFrame as error:
        return BadFrame(str(error), seal)


def _begin(message: function_host_pb2.Start, seal: Seal | None) -> Begin:
    if not message.function_id:
        raise BadFrame("Start.function_id is empty")
    invocation = Invocation(
        run_id=message.run_id,
        function_id=message.function_id,
        events=tuple(_event(event) for event in message.events),
        memo=tuple(_memoized(step) for step in message.memo),
        attempt=message.attempt,
        step_attempts=dict(message.step_attempts),
        log_lines=not message.omit_log_lines,
    )
    return Begin(invocation, message.traceparent, seal, invocation.step_attempts)


def _ack(message: function_host_pb2.Ack) -> Ack:
    try:
        result = _ACK_RESULTS[message.result]
    except KeyError:
        raise BadFrame(f"Ack for step {message.step_id!r} has no result") from None
    return Ack(
        step_id=message.step_id,
        result=result,
        output=message.output or None,
        error=_error_info(message.error) if message.HasField("error") else None,
    )


def session_responses(
    frames: Sequence[Answer], limit: int, max_frame: int
) -> list[function_host_pb2.InvokeResponse]:
    """`frames` in as few responses as fit in about `limit` bytes each (a bigger frame goes
    alone); a frame with a seal is sent as its serialized bytes and their MAC. A JSON
    payload larger than `max_frame` bytes, which the worker could not take, is sent as a
    non-retriable failure instead."""
    responses = [function_host_pb2.InvokeResponse()]
    size = 0
    for invocation_id, message, seal, sequence in frames:
        payload = _payload_size(message)
        if payload > max_frame:
            message = _too_large(message, payload, max_frame)
            payload = 0
        frame_size = payload + 96
        if size and size + frame_size > limit:
            responses.append(function_host_pb2.InvokeResponse())
            size = 0
        size += frame_size
        if seal is None:
            frame = responses[-1].frames.add()
            frame.invocation_id = invocation_id
            _fill_frame(frame, message)
            continue
        unsigned = _UNSIGNED_FRAME()
        _fill_frame(unsigned, message)
        data = unsigned.SerializeToString()
        # Fields set one by one: `add(**fields)` costs a third of a µs more a frame.
        signed = responses[-1].signed.add()
        signed.invocation_id = invocation_id
        signed.frame = data
        signed.mac = seal.macs.mac(sequence, data)
    return responses


_UNSIGNED_FRAME = function_host_pb2.HostFrame


def _payload_size(message: Message) -> int:
    if isinstance(message, StepReport):
        operation = message.operation
        if isinstance(operation, StepOutput):
            return len(operation.output)
        if isinstance(operation, InvokeFunction):
            return len(operation.data)
        if isinstance(operation, SendEvents):
            return sum(len(event.data) + 64 for event in operation.events)
        return 256
    if isinstance(message, RunCompleted):
        return len(message.output)
    if isinstance(message, LogLine):
        return 64 + len(message.message) + len(message.step_id or "") + len(message.fields or b"")
    return 256


def _too_large(message: Message, size: int, limit: int) -> Message:
    problem = f"{size} bytes of JSON, more than the {limit} a message may carry"
    if isinstance(message, StepReport):
        error = ErrorInfo(OUTPUT_TOO_LARGE.name, f"step {message.name!r}: {problem}")
        return StepReport(
            message.step_id,
            message.name,
            message.started_at,
            message.ended_at,
            StepFailure(error, retriable=OUTPUT_TOO_LARGE.retriable),
        )
    error = ErrorInfo(OUTPUT_TOO_LARGE.name, f"the function's result: {problem}")
    return RunFailed(error, OUTPUT_TOO_LARGE.retriable)


def _fill_frame(frame: function_host_pb2.HostFrame, message: Message) -> None:
    """Fill `frame` (in place: no intermediate messages to copy) from `message`."""
    match message:
        case StepReport():
            _step_report(message, frame.step)
        case RunCompleted(output=output):
            frame.completed.output = output
        case RunFailed(error=error, retriable=retriable, retry_after=retry_after):
            failed = frame.failed
            _set_error(failed.error, error)
            failed.retriable = retriable
            if retry_after is not None:
                failed.retry_after.FromTimedelta(retry_after)
            failed.pause_key = message.pause_key
        case Suspended():
            frame.suspended.SetInParent()
        case LogLine():
            log = frame.log
            log.level = _LOG_LEVEL_NUMBERS[message.level]
            log.message = message.message
            _set_timestamp(log.at, message.at)
            if message.step_id is not None:
                log.step_id = message.step_id
            if message.fields is not None:
                log.fields = message.fields


def describe_response(app: reverb.App) -> function_host_pb2.DescribeResponse:
    return function_host_pb2.DescribeResponse(app=app_definition(app))


def register_app_request(
    app: reverb.App, host_address: str, lease: timedelta, instance_id: str
) -> ingress_pb2.RegisterAppRequest:
    request = ingress_pb2.RegisterAppRequest(
        app=app_definition(app), host_address=host_address, instance_id=instance_id
    )
    request.lease.FromTimedelta(lease)
    return request


def app_definition(app: reverb.App) -> common_pb2.AppDefinition:
    return common_pb2.AppDefinition(
        id=app.id,
        functions=[_function_definition(definition) for definition in app.functions.values()],
    )


def _function_definition(definition: reverb.FunctionDefinition) -> common_pb2.FunctionDefinition:
    message = common_pb2.FunctionDefinition(
        id=definition.id,
        name=definition.name,
        triggers=[_trigger(trigger) for trigger in definition.triggers],
        retries=definition.retries,
        on_failure=definition.on_failure or "",
        start_timeout_ms=_milliseconds(definition.start_timeout),
        finish_timeout_ms=_milliseconds(definition.finish_timeout),
    )
    for limit in definition.concurrency:
        message.concurrency.add(
            limit=limit.limit,
            key=limit.key or "",
            scope=common_pb2.CONCURRENCY_SCOPE_APP
            if limit.scope == "app"
            else common_pb2.CONCURRENCY_SCOPE_FUNCTION,
        )
    if (throttle := definition.throttle) is not None:
        message.throttle.limit = throttle.limit
        message.throttle.period.FromTimedelta(throttle.period)
        message.throttle.key = throttle.key or ""
        message.throttle.burst = throttle.burst
    if (rate_limit := definition.rate_limit) is not None:
        message.rate_limit.limit = rate_limit.limit
        message.rate_limit.period.FromTimedelta(rate_limit.period)
        message.rate_limit.key = rate_limit.key or ""
    if definition.priority is not None:
        message.priority.run = definition.priority.run
    message.idempotency = definition.idempotency or ""
    if (debounce := definition.debounce) is not None:
        message.debounce.period.FromTimedelta(debounce.period)
        message.debounce.key = debounce.key or ""
        if debounce.timeout is not None:
            message.debounce.timeout.FromTimedelta(debounce.timeout)
    if (singleton := definition.singleton) is not None:
        message.singleton.key = singleton.key or ""
        message.singleton.mode = (
            common_pb2.SINGLETON_MODE_CANCEL
            if singleton.mode == "cancel"
            else common_pb2.SINGLETON_MODE_SKIP
        )
    if (batch := definition.batch) is not None:
        message.batch.max_size = batch.max_size
        message.batch.timeout.FromTimedelta(batch.timeout)
        message.batch.key = batch.key or ""
    for cancel in definition.cancel_on:
        added = message.cancel_on.add(
            event=cancel.event, match=cancel.match or "", condition=cancel.if_ or ""
        )
        if cancel.timeout is not None:
            added.timeout.FromTimedelta(cancel.timeout)
    for wait in definition.waits:
        message.waits.add(
            step_id=wait.step_id or "", match=wait.match or "", condition=wait.if_ or ""
        )
    return message


def _milliseconds(limit: timedelta | None) -> int:
    """A timeout in whole milliseconds (at least 1); 0 when there is none."""
    if limit is None:
        return 0
    return max(1, limit // timedelta(milliseconds=1))


def _trigger(trigger: reverb.Trigger) -> common_pb2.Trigger:
    if isinstance(trigger, reverb.EventTrigger):
        return common_pb2.Trigger(event=trigger.name)
    cron = common_pb2.CronTrigger(
        expression=trigger.expression,
        timezone=trigger.timezone or "",
        overlap=_OVERLAPS[trigger.overlap],
        catch_up=_CATCH_UPS[trigger.catch_up],
        catch_up_window_seconds=trigger.catch_up_window.total_seconds(),
        jitter_seconds=trigger.jitter.total_seconds() if trigger.jitter is not None else 0.0,
    )
    return common_pb2.Trigger(cron=cron)


_OVERLAPS: dict[Overlap, common_pb2.CronOverlap.ValueType] = {
    "allow": common_pb2.CRON_OVERLAP_ALLOW,
    "skip": common_pb2.CRON_OVERLAP_SKIP,
    "buffer_one": common_pb2.CRON_OVERLAP_BUFFER_ONE,
    "cancel_previous": common_pb2.CRON_OVERLAP_CANCEL_PREVIOUS,
}
_CATCH_UPS: dict[CatchUp, common_pb2.CronCatchUp.ValueType] = {
    "skip": common_pb2.CRON_CATCH_UP_SKIP,
    "latest": common_pb2.CRON_CATCH_UP_LATEST,
    "all": common_pb2.CRON_CATCH_UP_ALL,
}


def _event(event: common_pb2.Event) -> reverb.Event:
    try:
        data: Any = orjson.loads(event.data) if event.data else {}
    except orjson.JSONDecodeError as error:
        raise BadFrame(f"event {event.id!r}: data is not JSON ({error})") from None
    if not isinstance(data, dict):
        raise BadFrame(f"event {event.id!r}: data is not a JSON object")
    ts = _datetime(event.ts) if event.HasField("ts") else datetime.now(UTC)
    return reverb.Event(id=event.id, name=event.name, data=data, ts=ts)


def _memoized(step: function_host_pb2.MemoizedStep) -> MemoizedStep:
    result = step.WhichOneof("result")
    if result == "error":
        return MemoizedStep(step.step_id, error=_error_info(step.error))
    if result == "pending":
        return MemoizedStep(step.step_id, pending=True)
    return MemoizedStep(step.step_id, output=step.output or None)


def _step_report(report: StepReport, message: function_host_pb2.StepResult) -> None:
    message.step_id = report.step_id
    message.name = report.name
    _set_timestamp(message.started_at, report.started_at)
    _set_timestamp(message.ended_at, report.ended_at)
    operation = report.operation
    match operation:
        case StepOutput(output=output):
            message.output = output
        case StepFailure(error=error, retriable=retriable, retry_after=retry_after):
            _set_error(message.failure.error, error)
            message.failure.retriable = retriable
            if retry_after is not None:
                message.failure.retry_after.FromTimedelta(retry_after)
            message.failure.pause_key = operation.pause_key
        case Sleep(wake_at=wake_at):
            _set_timestamp(message.sleep.wake_at, wake_at)
        case InvokeFunction(function_id=function_id, data=data, timeout=timeout):
            message.invoke.function_id = function_id
            message.invoke.data = data
            if timeout is not None:
                message.invoke.timeout.FromTimedelta(timeout)
        case SendEvents(events=events):
            message.send_events.SetInParent()  # the op is set even with no events
            for event in events:
                sent = message.send_events.events.add(name=event.name, data=event.data)
                if event.id is not None:
                    sent.id = event.id
                if event.ts is not None:
                    _set_timestamp(sent.ts, event.ts)
        case WaitForEvent():
            _wait_for_event(operation, message.wait_for_event)


def _wait_for_event(operation: WaitForEvent, message: function_host_pb2.WaitForEvent) -> None:
    first, *others = operation.conditions
    message.event = first.event
    message.match = first.match or ""
    message.condition = first.condition or ""
    message.timeout.FromTimedelta(operation.timeout)
    if operation.lookback is not None:
        message.lookback.FromTimedelta(operation.lookback)
    for other in others:
        message.alternatives.add(
            event=other.event, match=other.match or "", condition=other.condition or ""
        )


def _set_error(message: common_pb2.ErrorInfo, error: ErrorInfo) -> None:
    message.type = error.type
    message.message = error.message
    message.stack = error.stack


def _error_info(error: common_pb2.ErrorInfo) -> ErrorInfo:
    return ErrorInfo(type=error.type, message=error.message, stack=error.stack)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _datetime(message: Timestamp) -> datetime:
    return _EPOCH + timedelta(0, message.seconds, message.nanos // 1_000)


def _set_timestamp(message: Timestamp, value: datetime) -> None:
    """Exact seconds and nanos of an aware datetime (Timestamp.FromDatetime is pure Python
    and several times slower)."""
    elapsed = value - _EPOCH
    message.seconds = elapsed.days * 86_400 + elapsed.seconds
    message.nanos = elapsed.microseconds * 1_000


_LOG_LEVEL_NUMBERS = {
    "debug": function_host_pb2.LOG_LEVEL_DEBUG,
    "info": function_host_pb2.LOG_LEVEL_INFO,
    "warning": function_host_pb2.LOG_LEVEL_WARNING,
    "error": function_host_pb2.LOG_LEVEL_ERROR,
}


_ACK_RESULTS = {
    function_host_pb2.ACK_RESULT_CONTINUE: AckResult.CONTINUE,
    function_host_pb2.ACK_RESULT_PENDING: AckResult.PENDING,
    function_host_pb2.ACK_RESULT_FAILED: AckResult.FAILED,
    function_host_pb2.ACK_RESULT_RETRY_LATER: AckResult.RETRY_LATER,
}
