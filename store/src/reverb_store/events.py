"""Durable event acceptance: event rows and their fan-out job, in one transaction."""

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


_INSERT = """
INSERT INTO reverb.events (id, name, data, ts)
SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::timestamptz[])
ON CONFLICT (id) DO NOTHING
RETURNING id
"""


async def insert_events(
    connection: asyncpg.Connection,
    events: Sequence[NewEvent],
    traceparent: str | None = None,
) -> list[str]:
    """Store events and enqueue one fan-out job for the new ones; return their ids.

    Call it inside a transaction: the events are accepted exactly when it
    commits. An event whose id is already stored is accepted once: its id is
    returned again and it triggers nothing new.
    """
    now = datetime.now(UTC)
    ids = [event.id or new_id() for event in events]
    inserted = await connection.fetch(
        _INSERT,
        ids,
        [event.name for event in events],
        [event.data for event in events],
        [event.ts or now for event in events],
    )
    new_ids = {row["id"] for row in inserted}
    fresh = tuple(dict.fromkeys(event_id for event_id in ids if event_id in new_ids))
    if fresh:
        await jobs.enqueue(connection, [jobs.ProcessEvent(fresh, traceparent)])
    return ids
