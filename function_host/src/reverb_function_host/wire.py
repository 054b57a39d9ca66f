"""The only module that touches protobuf types: reverb.v1 messages <-> SDK dataclasses."""

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

import reverb
from reverb.execution import (
    Ack,
    AckResult,
    ErrorInfo,
    Invocation,
    InvokeFunction,
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
)
from reverb_contracts.v1 import common_pb2, function_host_pb2, ingress_pb2

SERVICE_NAME = function_host_pb2.DESCRIPTOR.services_by_name["FunctionHost"].full_name


class WireError(ValueError):
    """A message the worker sent does not fit the protocol."""


def start(request: function_host_pb2.InvokeRequest) -> tuple[Invocation, str]:
    """The invocation an Invoke stream's first message asks for, and its traceparent."""
    if request.WhichOneof("message") != "start":
        raise WireError("the first message of Invoke must be a Start")
    message = request.start
    if not message.function_id:
        raise WireError("Start.function_id is empty")
    invocation = Invocation(
        run_id=message.run_id,
        function_id=message.function_id,
        events=tuple(_event(event) for event in message.events),
        memo=tuple(_memoized(step) for step in message.memo),
        attempt=message.attempt,
    )
    return invocation, message.traceparent


def ack(request: function_host_pb2.InvokeRequest) -> Ack:
    """The ack an Invoke stream's later message carries."""
    if request.WhichOneof("message") != "ack":
        raise WireError("after Start, Invoke accepts only Ack messages")
    message = request.ack
    try:
        result = _ACK_RESULTS[message.result]
    except KeyError:
        raise WireError(f"Ack for step {message.step_id!r} has no result") from None
    return Ack(
        step_id=message.step_id,
        result=result,
        output=message.output or None,
        error=_error_info(message.error) if message.HasField("error") else None,
    )


def response(message: Message) -> function_host_pb2.InvokeResponse:
    """The InvokeResponse for an execution's message."""
    match message:
        case StepReport():
            return function_host_pb2.InvokeResponse(step=_step_report(message))
        case RunCompleted(output=output):
            return function_host_pb2.InvokeResponse(
                completed=function_host_pb2.RunCompleted(output=output)
            )
        case RunFailed(error=error, retriable=retriable, retry_after=retry_after):
            failed = function_host_pb2.RunFailed(error=_error(error), retriable=retriable)
            if retry_after is not None:
                failed.retry_after.CopyFrom(_duration(retry_after))
            return function_host_pb2.InvokeResponse(failed=failed)
        case Suspended():
            return function_host_pb2.InvokeResponse(suspended=function_host_pb2.Suspended())


def describe_response(app: reverb.App) -> function_host_pb2.DescribeResponse:
    return function_host_pb2.DescribeResponse(app=app_definition(app))


def register_app_request(app: reverb.App, host_address: str) -> ingress_pb2.RegisterAppRequest:
    return ingress_pb2.RegisterAppRequest(app=app_definition(app), host_address=host_address)


def app_definition(app: reverb.App) -> common_pb2.AppDefinition:
    return common_pb2.AppDefinition(
        id=app.id,
        functions=[
            common_pb2.FunctionDefinition(
                id=definition.id,
                name=definition.name,
                triggers=[_trigger(trigger) for trigger in definition.triggers],
                retries=definition.retries,
            )
            for definition in app.functions.values()
        ],
    )


def _trigger(trigger: reverb.Trigger) -> common_pb2.Trigger:
    if isinstance(trigger, reverb.EventTrigger):
        return common_pb2.Trigger(event=trigger.name)
    cron = common_pb2.CronTrigger(expression=trigger.expression, timezone=trigger.timezone or "")
    return common_pb2.Trigger(cron=cron)


def _event(event: common_pb2.Event) -> reverb.Event:
    try:
        data: Any = orjson.loads(event.data) if event.data else {}
    except orjson.JSONDecodeError as error:
        raise WireError(f"event {event.id!r}: data is not JSON ({error})") from None
    if not isinstance(data, dict):
        raise WireError(f"event {event.id!r}: data is not a JSON object")
    ts = event.ts.ToDatetime(tzinfo=UTC) if event.HasField("ts") else datetime.now(UTC)
    return reverb.Event(id=event.id, name=event.name, data=data, ts=ts)


def _memoized(step: function_host_pb2.MemoizedStep) -> MemoizedStep:
    result = step.WhichOneof("result")
    if result == "error":
        return MemoizedStep(step.step_id, error=_error_info(step.error))
    if result == "pending":
        return MemoizedStep(step.step_id, pending=True)
    return MemoizedStep(step.step_id, output=step.output or None)


def _step_report(report: StepReport) -> function_host_pb2.StepReport:
    message = function_host_pb2.StepReport(
        step_id=report.step_id,
        name=report.name,
        started_at=_timestamp(report.started_at),
        ended_at=_timestamp(report.ended_at),
    )
    operation = report.operation
    match operation:
        case StepOutput(output=output):
            message.output = output
        case StepFailure(error=error, retriable=retriable, retry_after=retry_after):
            message.failure.error.CopyFrom(_error(error))
            message.failure.retriable = retriable
            if retry_after is not None:
                message.failure.retry_after.CopyFrom(_duration(retry_after))
        case Sleep(wake_at=wake_at):
            message.sleep.wake_at.CopyFrom(_timestamp(wake_at))
        case InvokeFunction(function_id=function_id, data=data, timeout=timeout):
            message.invoke.function_id = function_id
            message.invoke.data = data
            if timeout is not None:
                message.invoke.timeout.CopyFrom(_duration(timeout))
        case SendEvents(events=events):
            for event in events:
                sent = message.send_events.events.add(name=event.name, data=event.data)
                if event.id is not None:
                    sent.id = event.id
                if event.ts is not None:
                    sent.ts.CopyFrom(_timestamp(event.ts))
    return message


def _error(error: ErrorInfo) -> common_pb2.ErrorInfo:
    return common_pb2.ErrorInfo(type=error.type, message=error.message, stack=error.stack)


def _error_info(error: common_pb2.ErrorInfo) -> ErrorInfo:
    return ErrorInfo(type=error.type, message=error.message, stack=error.stack)


def _timestamp(value: datetime) -> Timestamp:
    timestamp = Timestamp()
    timestamp.FromDatetime(value.astimezone(UTC))
    return timestamp


def _duration(value: timedelta) -> Duration:
    duration = Duration()
    duration.FromTimedelta(value)
    return duration


_ACK_RESULTS = {
    function_host_pb2.ACK_RESULT_CONTINUE: AckResult.CONTINUE,
    function_host_pb2.ACK_RESULT_PENDING: AckResult.PENDING,
    function_host_pb2.ACK_RESULT_FAILED: AckResult.FAILED,
    function_host_pb2.ACK_RESULT_RETRY_LATER: AckResult.RETRY_LATER,
}
