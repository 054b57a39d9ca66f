"""The HTTP API's JSON ⇄ reverb.v1 messages: requests in, responses out.

JSON conventions: snake_case keys; lowercase enum strings ("queued", "send_event");
ISO-8601 UTC timestamps ("2025-01-31T09:00:00.000000Z"); JSON payloads (event
data, outputs) embedded as JSON, never as strings; errors as {type, message, stack}.
"""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from reverb_contracts.v1 import common_pb2, ingress_pb2
from reverb_ingress_gateway.errors import InvalidArgument, InvalidEvent
from reverb_ingress_gateway.paging import MAX_PAGE_SIZE
from reverb_ingress_gateway.wire.messages import (
    RUN_STATUSES,
    STEP_KINDS,
    STEP_STATUSES,
    add_event,
)

Query = Mapping[str, Sequence[str]]

_RUN_STATUS_NAMES = {value: name for name, value in RUN_STATUSES.items()}
_STEP_KIND_NAMES = {value: name for name, value in STEP_KINDS.items()}
_STEP_STATUS_NAMES = {value: name for name, value in STEP_STATUSES.items()}
_MAX_TS_MILLISECONDS = 253402300799999  # 9999-12-31T23:59:59.999Z


# Requests -------------------------------------------------------------------------------


def send_events_request(body: Any) -> ingress_pb2.SendEventsRequest:
    """One event object or a list of them; InvalidEvent names the bad one."""
    request = ingress_pb2.SendEventsRequest()
    if isinstance(body, dict):
        _add_event(request, body, "event")
    elif isinstance(body, list):
        for index, item in enumerate(body):
            _add_event(request, item, f"events[{index}]")
    else:
        raise InvalidEvent("the body must be an event object or a list of event objects")
    return request


def _add_event(request: ingress_pb2.SendEventsRequest, item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise InvalidEvent(f"{where} must be an object")
    name = item.get("name")
    if name is None:
        raise InvalidEvent(f"{where}.name is required")
    if not isinstance(name, str):
        raise InvalidEvent(f"{where}.name must be a string")
    data = item.get("data")
    if data is not None and not isinstance(data, dict):
        raise InvalidEvent(f"{where}.data must be an object")
    event_id = item.get("id")
    if event_id is not None and (not isinstance(event_id, str) or not event_id):
        raise InvalidEvent(f"{where}.id must be a non-empty string")
    add_event(
        request,
        name,
        orjson.dumps(data) if data is not None else b"",
        event_id or "",
        _timestamp_in(item.get("ts"), where),
    )


def _timestamp_in(value: Any, where: str) -> datetime | None:
    """An ISO-8601 string (UTC when it names no offset) or Unix milliseconds."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent(
                f"{where}.ts must be an ISO-8601 time or Unix milliseconds"
            ) from None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= _MAX_TS_MILLISECONDS:
            raise InvalidEvent(f"{where}.ts is out of range")
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    raise InvalidEvent(f"{where}.ts must be an ISO-8601 time or Unix milliseconds")


def _first(query: Query, key: str) -> str:
    values = query.get(key) or ()
    return values[0] if values else ""


def _limit(query: Query) -> int:
    text = _first(query, "limit")
    if not text:
        return 0
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}")
    return int(text)


def list_events_request(query: Query) -> ingress_pb2.ListEventsRequest:
    return ingress_pb2.ListEventsRequest(
        name=_first(query, "name"), page_size=_limit(query), page_token=_first(query, "cursor")
    )


def list_runs_request(query: Query) -> ingress_pb2.ListRunsRequest:
    """?function, ?status (repeated or comma-separated), ?event, ?cursor, ?limit."""
    statuses = []
    for value in query.get("status") or ():
        for name in filter(None, (part.strip().lower() for part in value.split(","))):
            if name not in RUN_STATUSES:
                raise InvalidArgument(f"unknown status {name!r}; one of: {', '.join(RUN_STATUSES)}")
            statuses.append(RUN_STATUSES[name])
    return ingress_pb2.ListRunsRequest(
        function_id=_first(query, "function"),
        statuses=statuses,
        event_id=_first(query, "event"),
        page_size=_limit(query),
        page_token=_first(query, "cursor"),
    )


def get_event_request(event_id: str) -> ingress_pb2.GetEventRequest:
    return ingress_pb2.GetEventRequest(id=event_id)


def get_run_request(run_id: str) -> ingress_pb2.GetRunRequest:
    return ingress_pb2.GetRunRequest(id=run_id)


def list_functions_request() -> ingress_pb2.ListFunctionsRequest:
    return ingress_pb2.ListFunctionsRequest()


# Responses ------------------------------------------------------------------------------


def _time(stamp: Timestamp) -> str:
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _optional_time(message: Any, field: str) -> str | None:
    return _time(getattr(message, field)) if message.HasField(field) else None


def _payload(value: bytes) -> orjson.Fragment | None:
    """Stored JSON, embedded as it is (it came from PostgreSQL, so it is valid)."""
    return orjson.Fragment(value) if value else None


def _error(message: Any) -> dict[str, str] | None:
    if not message.HasField("error"):
        return None
    error: common_pb2.ErrorInfo = message.error
    return {"type": error.type, "message": error.message, "stack": error.stack}


def ids(response: ingress_pb2.SendEventsResponse) -> dict[str, Any]:
    return {"ids": list(response.ids)}


def event(record: ingress_pb2.EventRecord) -> dict[str, Any]:
    return {
        "id": record.event.id,
        "name": record.event.name,
        "data": _payload(record.event.data) or orjson.Fragment(b"{}"),
        "ts": _time(record.event.ts),
        "received_at": _time(record.received_at),
    }


def event_with_runs(response: ingress_pb2.GetEventResponse) -> dict[str, Any]:
    return {**event(response.event), "runs": [run(item) for item in response.runs]}


def events_page(response: ingress_pb2.ListEventsResponse) -> dict[str, Any]:
    return {
        "events": [event(record) for record in response.events],
        "next_cursor": response.next_page_token or None,
    }


def run(message: ingress_pb2.Run) -> dict[str, Any]:
    return {
        "id": message.id,
        "function_id": message.function_id,
        "app_id": message.app_id,
        "status": _RUN_STATUS_NAMES.get(message.status, "unspecified"),
        "event_ids": list(message.event_ids),
        "attempt": message.attempt,
        "invocations": message.invocations,
        "output": _payload(message.output),
        "error": _error(message),
        "created_at": _optional_time(message, "created_at"),
        "started_at": _optional_time(message, "started_at"),
        "ended_at": _optional_time(message, "ended_at"),
        "parent_run_id": message.parent_run_id or None,
    }


def run_with_steps(response: ingress_pb2.GetRunResponse) -> dict[str, Any]:
    return {**run(response.run), "steps": [step(item) for item in response.run.steps]}


def runs_page(response: ingress_pb2.ListRunsResponse) -> dict[str, Any]:
    return {
        "runs": [run(message) for message in response.runs],
        "next_cursor": response.next_page_token or None,
    }


def step(message: ingress_pb2.Step) -> dict[str, Any]:
    return {
        "id": message.id,
        "name": message.name,
        "kind": _STEP_KIND_NAMES.get(message.kind, "unspecified"),
        "status": _STEP_STATUS_NAMES.get(message.status, "unspecified"),
        "attempts": message.attempts,
        "started_at": _optional_time(message, "started_at"),
        "ended_at": _optional_time(message, "ended_at"),
        "output": _payload(message.output),
        "error": _error(message),
        "wake_at": _optional_time(message, "wake_at"),
        "child_run_id": message.child_run_id or None,
    }


def functions(response: ingress_pb2.ListFunctionsResponse) -> dict[str, Any]:
    return {"functions": [_function(info) for info in response.functions]}


def _function(info: ingress_pb2.FunctionInfo) -> dict[str, Any]:
    definition = info.definition
    return {
        "id": definition.id,
        "name": definition.name,
        "app_id": info.app_id,
        "retries": definition.retries,
        "triggers": [_trigger(trigger) for trigger in definition.triggers],
    }


def _trigger(trigger: common_pb2.Trigger) -> dict[str, Any]:
    if trigger.WhichOneof("kind") == "cron":
        return {"cron": trigger.cron.expression, "timezone": trigger.cron.timezone or None}
    return {"event": trigger.event}
