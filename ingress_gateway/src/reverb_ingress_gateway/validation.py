"""Checks on what clients send: events (SendEvents) and app definitions (RegisterApp)."""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from reverb.schedules import CronSchedule
from reverb_ingress_gateway import json_limits
from reverb_ingress_gateway.errors import (
    InvalidArgument,
    InvalidEvent,
    PayloadTooLarge,
    TooManyEvents,
)
from reverb_store import NewEvent, flow
from reverb_store.control import AppDefinition, FunctionDefinition, TriggerDefinition
from reverb_store.execution import cancel_on, waits

MAX_RETRIES = 20
# A function's triggers, events and crons together (the SDK's limit too).
MAX_TRIGGERS = 10
# Printable text without control characters (PostgreSQL text cannot hold NUL).
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,256}")
# Function and app ids: no whitespace either.
_IDENTIFIER = re.compile(r"[^\s\x00-\x1f\x7f]{1,128}")


@dataclass(slots=True)
class EventDraft:
    """An event as a client sent it, before checks."""

    name: str
    # JSON; empty means {}.
    data: bytes
    # Empty: the gateway assigns a UUIDv7.
    id: str
    ts: datetime | None


def accept_events(
    drafts: Sequence[EventDraft], *, max_event_bytes: int, max_events: int
) -> list[NewEvent]:
    """The events to store, or InvalidEvent / PayloadTooLarge naming the first bad one."""
    if not drafts:
        raise InvalidEvent("no events: send at least one")
    if len(drafts) > max_events:
        raise TooManyEvents(f"{len(drafts)} events in one request; the limit is {max_events}")
    return [_accept(draft, index, max_event_bytes) for index, draft in enumerate(drafts)]


def _accept(draft: EventDraft, index: int, max_event_bytes: int) -> NewEvent:
    where = f"events[{index}]"
    if not draft.name:
        raise InvalidEvent(f"{where}: name is required")
    if not _NAME.fullmatch(draft.name):
        raise InvalidEvent(f"{where}: name must be 1-256 characters without control characters")
    if draft.id and not _NAME.fullmatch(draft.id):
        raise InvalidEvent(f"{where}: id must be 1-256 characters without control characters")
    data = event_data(draft.data, where, max_event_bytes)
    return NewEvent(name=draft.name, data=data, id=draft.id or None, ts=draft.ts)


def event_data(data: bytes, where: str, max_event_bytes: int) -> str:
    """An event's data as JSON text of an object (empty: `{}`), or InvalidEvent /
    PayloadTooLarge / InvalidArgument naming `where`."""
    if len(data) > max_event_bytes:
        raise PayloadTooLarge(
            f"{where}: data is {len(data)} bytes of JSON; the limit is {max_event_bytes}"
        )
    data = data or b"{}"
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise InvalidEvent(f"{where}: data is not valid JSON ({error})") from None
    if not isinstance(parsed, dict):
        raise InvalidEvent(f"{where}: data must be a JSON object")
    if json_limits.too_deep(data):
        raise InvalidEvent(f"{where}: data {json_limits.depth_problem()}")
    oversized = json_limits.oversized_integer(data)
    if oversized is not None:
        raise InvalidArgument(f"{where}: data {json_limits.integer_problem(oversized)}")
    if b"\\u0000" in data and _holds_nul(parsed):
        raise InvalidEvent(f"{where}: data must not contain \\u0000 (PostgreSQL cannot store it)")
    return data.decode()


def check_text(value: str, name: str) -> None:
    """InvalidArgument if a text a caller looks things up by holds a NUL character (no id,
    name or cursor can: PostgreSQL text cannot hold it)."""
    if "\x00" in value:
        raise InvalidArgument(f"{name} must not contain a NUL character (\\u0000)")


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def check_app(app: AppDefinition, host_address: str) -> None:
    """Raise InvalidArgument unless the app can be registered as it is."""
    if not _IDENTIFIER.fullmatch(app.id):
        raise InvalidArgument(f"app id {app.id!r} must be 1-128 characters without spaces")
    if not host_address.strip():
        raise InvalidArgument("host_address is required")
    if not _NAME.fullmatch(host_address):
        raise InvalidArgument("host_address must be 1-256 characters without control characters")
    seen: set[str] = set()
    for function in app.functions:
        if function.id in seen:
            raise InvalidArgument(f"function id {function.id!r} appears twice")
        seen.add(function.id)
        _check_function(function)
    for function in app.functions:
        if function.on_failure is not None and function.on_failure not in seen:
            raise InvalidArgument(
                f"function {function.id!r}: on_failure names {function.on_failure!r},"
                f" which app {app.id!r} does not define"
            )


def _check_function(function: FunctionDefinition) -> None:
    where = f"function {function.id!r}"
    if not _IDENTIFIER.fullmatch(function.id):
        raise InvalidArgument(f"{where}: id must be 1-128 characters without spaces")
    if not _NAME.fullmatch(function.name):
        raise InvalidArgument(f"{where}: name must be 1-256 characters")
    if not 0 <= function.retries <= MAX_RETRIES:
        raise InvalidArgument(f"{where}: retries must be between 0 and {MAX_RETRIES}")
    if len(function.triggers) > MAX_TRIGGERS:
        raise InvalidArgument(
            f"{where}: {len(function.triggers)} triggers; at most {MAX_TRIGGERS},"
            " events and crons together"
        )
    crons: set[tuple[str, str]] = set()
    for trigger in function.triggers:
        _check_trigger(trigger, where)
        if trigger.cron is not None:
            key = (" ".join(trigger.cron.split()), trigger.timezone or "UTC")
            if key in crons:
                raise InvalidArgument(f"{where}: the cron {trigger.cron!r} appears twice")
            crons.add(key)
    try:
        flow.check(function.id, function.flow)
        cancel_on.check(function.id, function.cancel_on)
        waits.check_declared(function.id, function.waits)
    except ValueError as error:
        raise InvalidArgument(str(error)) from None


def _check_trigger(trigger: TriggerDefinition, where: str) -> None:
    if trigger.event is not None:
        if not _NAME.fullmatch(trigger.event):
            raise InvalidArgument(f"{where}: trigger event name {trigger.event!r} is not valid")
        return
    if trigger.cron is None:
        raise InvalidArgument(f"{where}: a trigger needs an event or a cron expression")
    try:
        CronSchedule.parse(trigger.cron, trigger.timezone)
    except ValueError as error:
        raise InvalidArgument(f"{where}: {error}") from None
