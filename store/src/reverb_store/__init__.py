"""Reverb's PostgreSQL schema, migrations and the queries the gateway and the worker share."""

from reverb_store.events import (
    EventGroup,
    NewEvent,
    insert_event_groups,
    insert_events,
    prepare_insert,
)
from reverb_store.ids import new_id
from reverb_store.migrate import migrate

__all__ = [
    "EventGroup",
    "NewEvent",
    "insert_event_groups",
    "insert_events",
    "migrate",
    "new_id",
    "prepare_insert",
]
