"""Durable event acceptance: event rows and their fan-out jobs, in the caller's transaction.

Several requests' events can be accepted at once (the gateway group-commits): they
share one INSERT, and each group still gets its own process_event job carrying its
own traceparent. An id already stored is accepted once (its id is returned again and
it triggers nothing new); an id repeated across groups of one call belongs to the
first of them. An event triggers the functions listening to its name when it is
accepted: one that no function listens to gets no fan-out job.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from reverb_store import jobs
from reverb_store.ids import new_id


@dataclass(frozen=True, slots=True)
class NewEvent:
    name: str
    # The event's data as JSON text (an object).
    data: str
    id: str | None = None
    ts: datetime | None = None


@dataclass(frozen=True, slots=True)
class EventGroup:
    """The events of one request, and the trace context they were sent in."""

    events: Sequence[NewEvent]
    traceparent: str | None = None


_INSERT = """
INSERT INTO reverb.events (id, name, data, ts)
SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::timestamptz[])
ON CONFLICT (id) DO NOTHING
RETURNING id, EXISTS (SELECT FROM reverb.triggers t WHERE t.event_name = events.name) AS triggers
"""


async def insert_event_groups(
    connection: asyncpg.Connection, groups: Sequence[EventGroup]
) -> list[list[str]]:
    """Store every group's events and enqueue their fan-out jobs; return each group's ids.

    Call it inside a transaction: the events are accepted exactly when it commits.
    """
    now = datetime.now(UTC)
    ids = [[event.id or new_id() for event in group.events] for group in groups]
    events = [event for group in groups for event in group.events]
    inserted = await connection.fetch(
        _INSERT,
        [event_id for group_ids in ids for event_id in group_ids],
        [event.name for event in events],
        [event.data for event in events],
        [event.ts or now for event in events],
    )
    unclaimed = {row["id"] for row in inserted if row["triggers"]}
    fan_outs = []
    for group, group_ids in zip(groups, ids, strict=True):
        fresh = tuple(dict.fromkeys(event_id for event_id in group_ids if event_id in unclaimed))
        unclaimed.difference_update(fresh)
        if fresh:
            fan_outs.append(jobs.ProcessEvent(fresh, group.traceparent))
    await jobs.enqueue(connection, fan_outs)
    return ids


async def insert_events(
    connection: asyncpg.Connection,
    events: Sequence[NewEvent],
    traceparent: str | None = None,
) -> list[str]:
    """Store one request's events and enqueue their fan-out job; return their ids."""
    (ids,) = await insert_event_groups(connection, [EventGroup(events, traceparent)])
    return ids
