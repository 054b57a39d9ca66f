"""reverb.v1 messages ⇄ the gateway's domain types (reverb_store records and definitions)."""

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import orjson
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from reverb.schedules import CatchUp, Overlap
from reverb_contracts.v1 import common_pb2, ingress_pb2
from reverb_ingress_gateway.errors import InvalidArgument, InvalidEvent
from reverb_ingress_gateway.servicer import Page
from reverb_ingress_gateway.validation import EventDraft
from reverb_ingress_gateway.wire.flow import cancel_on, fill, fill_cancel_on, flow_options
from reverb_store.control import (
    AppDefinition,
    CancelledBy,
    ErrorDetails,
    EventRecord,
    FunctionDefinition,
    FunctionRecord,
    RunFilter,
    RunRecord,
    StepRecord,
    TriggerDefinition,
    TriggerRecord,
    WaitingOn,
)
from reverb_store.execution import DeclaredWait, RunStatus, SkippedRun, StepKind, StepStatus
from reverb_store.ids import EventId, FunctionId
from reverb_store.webhooks import DeliveryRecord

RUN_STATUSES: dict[RunStatus, ingress_pb2.RunStatus.ValueType] = {
    "queued": ingress_pb2.RUN_STATUS_QUEUED,
    "running": ingress_pb2.RUN_STATUS_RUNNING,
    "sleeping": ingress_pb2.RUN_STATUS_SLEEPING,
    "waiting": ingress_pb2.RUN_STATUS_WAITING,
    "paused": ingress_pb2.RUN_STATUS_PAUSED,
    "completed": ingress_pb2.RUN_STATUS_COMPLETED,
    "failed": ingress_pb2.RUN_STATUS_FAILED,
    "cancelled": ingress_pb2.RUN_STATUS_CANCELLED,
}
STEP_KINDS: dict[StepKind, ingress_pb2.StepKind.ValueType] = {
    "run": ingress_pb2.STEP_KIND_RUN,
    "sleep": ingress_pb2.STEP_KIND_SLEEP,
    "invoke": ingress_pb2.STEP_KIND_INVOKE,
    "send_event": ingress_pb2.STEP_KIND_SEND_EVENT,
    "wait_for_event": ingress_pb2.STEP_KIND_WAIT_FOR_EVENT,
}
STEP_STATUSES: dict[StepStatus, ingress_pb2.StepStatus.ValueType] = {
    "completed": ingress_pb2.STEP_STATUS_COMPLETED,
    "failed": ingress_pb2.STEP_STATUS_FAILED,
    "retrying": ingress_pb2.STEP_STATUS_RETRYING,
    "sleeping": ingress_pb2.STEP_STATUS_SLEEPING,
    "waiting": ingress_pb2.STEP_STATUS_WAITING,
}
_STATUS_NAMES = {value: name for name, value in RUN_STATUSES.items()}


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def event_drafts(request: ingress_pb2.SendEventsRequest) -> list[EventDraft]:
    drafts = []
    for index, event in enumerate(request.events):
        ts = None
        if event.HasField("ts"):
            try:
                ts = event.ts.ToDatetime(tzinfo=UTC)
            except (ValueError, OverflowError):
                raise InvalidEvent(f"events[{index}]: ts is out of range") from None
        drafts.append(EventDraft(name=event.name, data=event.data, id=event.id, ts=ts))
    return drafts


def event_record(record: EventRecord) -> ingress_pb2.EventRecord:
    return ingress_pb2.EventRecord(
        event=common_pb2.Event(
            id=record.id, name=record.name, data=record.data.encode(), ts=timestamp(record.ts)
        ),
        received_at=timestamp(record.received_at),
    )


def _error(details: ErrorDetails | None) -> common_pb2.ErrorInfo | None:
    if details is None:
        return None
    return common_pb2.ErrorInfo(type=details.type, message=details.message, stack=details.stack)


def _optional_timestamp(value: datetime | None) -> Timestamp | None:
    return timestamp(value) if value is not None else None


def run(record: RunRecord, steps: Sequence[StepRecord] = ()) -> ingress_pb2.Run:
    return ingress_pb2.Run(
        id=record.id,
        function_id=record.function_id,
        app_id=record.app_id,
        status=RUN_STATUSES[record.status],
        event_ids=record.event_ids,
        attempt=record.attempt,
        invocations=record.invocations,
        output=record.output.encode() if record.output is not None else b"",
        error=_error(record.error),
        created_at=timestamp(record.created_at),
        started_at=_optional_timestamp(record.started_at),
        ended_at=_optional_timestamp(record.ended_at),
        parent_run_id=record.parent_run_id,
        trace_id=record.trace_id,
        steps=[step(item) for item in steps],
        replay_of=record.replay_of,
        replay_from_step=record.replay_from_step,
        waiting_on=_waiting_on(record.waiting_on),
        cancelled_by=_cancelled_by(record.cancelled_by),
    )


def _cancelled_by(cancelled: CancelledBy | None) -> ingress_pb2.CancelledBy | None:
    if cancelled is None:
        return None
    return ingress_pb2.CancelledBy(
        event_id=cancelled.event_id,
        event_name=cancelled.event_name,
        cancel_on=cancelled.cancel_on,
    )


def _waiting_on(waiting: WaitingOn | None) -> ingress_pb2.WaitingOn | None:
    if waiting is None:
        return None
    return ingress_pb2.WaitingOn(kind=waiting.kind, until=_optional_timestamp(waiting.until))


def step(record: StepRecord) -> ingress_pb2.Step:
    return ingress_pb2.Step(
        id=record.id,
        name=record.name,
        kind=STEP_KINDS[record.kind],
        status=STEP_STATUSES[record.status],
        attempts=record.attempts,
        started_at=_optional_timestamp(record.started_at),
        ended_at=_optional_timestamp(record.ended_at),
        output=record.output.encode() if record.output is not None else b"",
        error=_error(record.error),
        wake_at=_optional_timestamp(record.wake_at),
        child_run_id=record.child_run_id,
    )


def run_filter(request: ingress_pb2.ListRunsRequest) -> RunFilter:
    statuses = []
    for status in request.statuses:
        if status not in _STATUS_NAMES:
            raise InvalidArgument(f"unknown run status {status}")
        statuses.append(_STATUS_NAMES[status])
    return RunFilter(
        function_id=FunctionId(request.function_id) if request.function_id else None,
        statuses=tuple(statuses),
        event_id=EventId(request.event_id) if request.event_id else None,
    )


def run_status(value: ingress_pb2.RunStatus.ValueType) -> RunStatus | None:
    """A request's run status; None when unset."""
    if value == ingress_pb2.RUN_STATUS_UNSPECIFIED:
        return None
    if value not in _STATUS_NAMES:
        raise InvalidArgument(f"unknown run status {value}")
    return _STATUS_NAMES[value]


def optional_time(message: Message, field: str) -> datetime | None:
    """A Timestamp field of a request in UTC; None when unset."""
    if not message.HasField(field):
        return None
    try:
        value: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(f"{field} is out of range") from None
    return value


def function_info(record: FunctionRecord) -> ingress_pb2.FunctionInfo:
    info = ingress_pb2.FunctionInfo(
        app_id=record.app_id,
        definition=common_pb2.FunctionDefinition(
            id=record.id,
            name=record.name,
            retries=record.retries,
            on_failure=record.on_failure or "",
            start_timeout_ms=_milliseconds(record.start_timeout),
            finish_timeout_ms=_milliseconds(record.finish_timeout),
            triggers=[_trigger_message(trigger) for trigger in record.triggers],
        ),
        paused=record.paused_at is not None,
        paused_at=_optional_timestamp(record.paused_at),
    )
    fill(info.definition, record.flow)
    fill_cancel_on(info.definition, record.cancel_on)
    return info


def _trigger_message(trigger: TriggerRecord) -> common_pb2.Trigger:
    schedule = trigger.schedule
    if schedule is None:
        return common_pb2.Trigger(event=trigger.event or "")
    definition = schedule.definition
    cron = common_pb2.CronTrigger(
        expression=definition.cron,
        timezone=definition.timezone,
        overlap=_OVERLAP_VALUES[definition.overlap],
        catch_up=_CATCH_UP_VALUES[definition.catch_up],
        catch_up_window_seconds=definition.catch_up_window.total_seconds(),
        jitter_seconds=definition.jitter.total_seconds(),
        missed=schedule.missed,
        skipped=schedule.skipped,
    )
    cron.next_at.FromDatetime(schedule.next_at)
    if schedule.last_at is not None:
        cron.last_at.FromDatetime(schedule.last_at)
    return common_pb2.Trigger(cron=cron)


def app_definition(message: common_pb2.AppDefinition) -> AppDefinition:
    """The domain definition; a function's name defaults to its id."""
    return AppDefinition(
        id=message.id,
        functions=tuple(
            FunctionDefinition(
                id=function.id,
                name=function.name or function.id,
                retries=function.retries,
                triggers=tuple(_trigger(trigger) for trigger in function.triggers),
                on_failure=function.on_failure or None,
                start_timeout=_timeout(function.start_timeout_ms, function.id, "start"),
                finish_timeout=_timeout(function.finish_timeout_ms, function.id, "finish"),
                flow=flow_options(function),
                cancel_on=cancel_on(function),
                waits=tuple(
                    DeclaredWait(wait.step_id, wait.match, wait.condition)
                    for wait in function.waits
                ),
            )
            for function in message.functions
        ),
    )


# Ten years: a longer timeout is a mistake (and PostgreSQL's interval holds it).
MAX_TIMEOUT_MS = 10 * 366 * 24 * 3600 * 1000


def _timeout(milliseconds: int, function_id: str, which: str) -> timedelta | None:
    if milliseconds == 0:
        return None
    if not 0 < milliseconds <= MAX_TIMEOUT_MS:
        raise InvalidArgument(
            f"function {function_id!r}: {which}_timeout_ms must be between 1 and"
            f" {MAX_TIMEOUT_MS} (ten years), not {milliseconds}"
        )
    return timedelta(milliseconds=milliseconds)


def _milliseconds(limit: timedelta | None) -> int:
    return 0 if limit is None else limit // timedelta(milliseconds=1)


def lease(
    message: ingress_pb2.RegisterAppRequest | ingress_pb2.RenewHostLeaseRequest,
) -> timedelta | None:
    """The lease a host asks for; None when it asks for none."""
    if not message.HasField("lease"):
        return None
    try:
        return message.lease.ToTimedelta()
    except (OverflowError, ValueError):
        raise InvalidArgument("lease is not a valid duration") from None


def _trigger(message: common_pb2.Trigger) -> TriggerDefinition:
    kind = message.WhichOneof("kind")
    if kind == "event":
        return TriggerDefinition(event=message.event)
    if kind == "cron":
        cron = message.cron
        return TriggerDefinition(
            cron=cron.expression,
            timezone=cron.timezone or None,
            overlap=_OVERLAPS.get(cron.overlap, "allow"),
            catch_up=_CATCH_UPS.get(cron.catch_up, "latest"),
            catch_up_window=_seconds(cron.catch_up_window_seconds, "catch_up_window_seconds")
            or timedelta(hours=1),
            jitter=_seconds(cron.jitter_seconds, "jitter_seconds"),
        )
    return TriggerDefinition()


_OVERLAPS: dict[common_pb2.CronOverlap.ValueType, Overlap] = {
    common_pb2.CRON_OVERLAP_ALLOW: "allow",
    common_pb2.CRON_OVERLAP_SKIP: "skip",
    common_pb2.CRON_OVERLAP_BUFFER_ONE: "buffer_one",
    common_pb2.CRON_OVERLAP_CANCEL_PREVIOUS: "cancel_previous",
}
_CATCH_UPS: dict[common_pb2.CronCatchUp.ValueType, CatchUp] = {
    common_pb2.CRON_CATCH_UP_SKIP: "skip",
    common_pb2.CRON_CATCH_UP_LATEST: "latest",
    common_pb2.CRON_CATCH_UP_ALL: "all",
}
_OVERLAP_VALUES = {name: value for value, name in _OVERLAPS.items()}
_CATCH_UP_VALUES = {name: value for value, name in _CATCH_UPS.items()}


def _seconds(value: float, what: str) -> timedelta:
    if not math.isfinite(value) or not 0 <= value <= _MAX_SECONDS:
        raise InvalidArgument(f"{what} must be between 0 and {_MAX_SECONDS:.0f} seconds")
    return timedelta(seconds=value)


# A year: longer windows and jitters than that are mistakes.
_MAX_SECONDS = 366 * 86400.0


def get_event_response(
    record: EventRecord,
    runs: Sequence[RunRecord],
    skipped: Sequence[SkippedRun] = (),
    cancelled: Sequence[tuple[str, str]] = (),
) -> ingress_pb2.GetEventResponse:
    return ingress_pb2.GetEventResponse(
        event=event_record(record),
        runs=[run(item) for item in runs],
        skipped=[
            ingress_pb2.SkippedRun(function_id=item.function_id, reason=item.reason)
            for item in skipped
        ],
        cancelled=[
            ingress_pb2.CancelledRun(run_id=run_id, function_id=function_id)
            for run_id, function_id in cancelled
        ],
    )


def list_events_response(page: Page[EventRecord]) -> ingress_pb2.ListEventsResponse:
    return ingress_pb2.ListEventsResponse(
        events=[event_record(record) for record in page.items],
        next_page_token=page.next_page_token or None,
    )


def get_run_response(record: RunRecord, steps: Sequence[StepRecord]) -> ingress_pb2.GetRunResponse:
    return ingress_pb2.GetRunResponse(run=run(record, steps))


def list_runs_response(page: Page[RunRecord]) -> ingress_pb2.ListRunsResponse:
    return ingress_pb2.ListRunsResponse(
        runs=[run(record) for record in page.items],
        next_page_token=page.next_page_token or None,
    )


def list_functions_response(
    records: Sequence[FunctionRecord],
) -> ingress_pb2.ListFunctionsResponse:
    return ingress_pb2.ListFunctionsResponse(functions=[function_info(item) for item in records])


def webhook_delivery(record: DeliveryRecord) -> ingress_pb2.WebhookDelivery:
    return ingress_pb2.WebhookDelivery(
        id=record.id,
        source=record.source,
        delivery_id=record.delivery_id,
        event_id=record.event_id,
        event_name=record.event_name,
        headers=orjson.dumps(record.headers),
        body_bytes=len(record.body),
        received_at=timestamp(record.received_at),
    )


def list_webhook_deliveries_response(
    page: Page[DeliveryRecord],
) -> ingress_pb2.ListWebhookDeliveriesResponse:
    return ingress_pb2.ListWebhookDeliveriesResponse(
        deliveries=[webhook_delivery(record) for record in page.items],
        next_page_token=page.next_page_token or None,
    )
