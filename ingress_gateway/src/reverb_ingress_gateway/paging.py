"""Page sizes and opaque page tokens (HTTP calls them cursors).

A token names where the previous page ended: a run id (runs are listed by id
descending) or an event's (received_at, id).
"""

import base64
import binascii
from datetime import UTC, datetime

import orjson

from reverb_ingress_gateway.errors import InvalidArgument
from reverb_store.control import EventCursor

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(requested: int) -> int:
    """0 means the default; above the maximum means the maximum."""
    if requested < 0:
        raise InvalidArgument("page size must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _encode(value: list[str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def _decode(token: str, kind: str) -> list[str]:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        value = None
    if (
        not isinstance(value, list)
        or not value
        or value[0] != kind
        or not all(isinstance(part, str) and "\x00" not in part for part in value)
    ):
        raise InvalidArgument("invalid cursor (page token): pass back a next_cursor as it is")
    return value[1:]


def run_token(run_id: str) -> str:
    return _encode(["run", run_id])


def run_from_token(token: str) -> str | None:
    if not token:
        return None
    parts = _decode(token, "run")
    if len(parts) != 1:
        raise InvalidArgument("invalid cursor (page token): pass back a next_cursor as it is")
    return parts[0]


def event_token(cursor: EventCursor) -> str:
    return _encode(["event", cursor.received_at.isoformat(), cursor.id])


def event_from_token(token: str) -> EventCursor | None:
    if not token:
        return None
    parts = _decode(token, "event")
    try:
        received_at, event_id = parts
        moment = datetime.fromisoformat(received_at)
        if moment.tzinfo is None:
            raise ValueError("no time zone")
        # In UTC, as PostgreSQL compares it: an offset can carry year 1 or 9999 out of range.
        return EventCursor(moment.astimezone(UTC), event_id)
    except (ValueError, OverflowError):
        raise InvalidArgument(
            "invalid cursor (page token): pass back a next_cursor as it is"
        ) from None


def delivery_token(delivery_id: str) -> str:
    return _encode(["delivery", delivery_id])


def delivery_from_token(token: str) -> str | None:
    """Webhook deliveries are listed by id descending (UUIDv7s: newest first)."""
    if not token:
        return None
    parts = _decode(token, "delivery")
    if len(parts) != 1:
        raise InvalidArgument("invalid cursor (page token): pass back a next_cursor as it is")
    return parts[0]
