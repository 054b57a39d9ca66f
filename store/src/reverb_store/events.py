"""Durable event acceptance: event rows and their fan-out jobs, in the caller's transaction.

Several requests' events can be accepted at once (the gateway group-commits): they
share one INSERT, and each group still gets its own process_event job carrying its
own traceparent. An id already stored is accepted once (its id is returned again and
it triggers nothing new); an id repeated across groups of one call belongs to the
first of them. An event triggers the functions listening to its name when it is
accepted: one that no function listens to gets no fan-out job. An event whose name a
wait has used gets a `match_waits` job as well.
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


_PROCESS_EVENT_COLUMNS = jobs.PROCESS_EVENT.sql_columns(
    event_ids="event_ids", traceparent="($6::text[])[request]"
)

_MATCH_WAITS_COLUMNS = jobs.MATCH_WAITS.sql_columns(
    event_ids="waited_ids", traceparent="($6::text[])[request]"
)

# One statement, so atomic on its own: the events, then one process_event job per group
# for its new events that a function listens to, and one match_waits job per group for
# its new events whose name a wait used (an id repeated in the call belongs to its first
# occurrence's group). Reading `wait_keys` here takes its lock before the statement's
# snapshot: see `execution.waits`.
_INSERT = f"""
WITH input AS MATERIALIZED (
    SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::timestamptz[], $5::int[])
        WITH ORDINALITY AS t(id, name, data, ts, request, position)
), inserted AS (
    INSERT INTO reverb.events (id, name, data, ts)
    SELECT id, name, data, ts FROM input ORDER BY position
    ON CONFLICT (id) DO NOTHING
    RETURNING id, EXISTS (SELECT FROM reverb.triggers t WHERE t.event_name = events.name) AS heard,
              EXISTS (SELECT FROM reverb.wait_keys k WHERE k.event_name = events.name) AS waited
), fanned AS (
    SELECT DISTINCT ON (input.id) input.id, input.request, input.position, inserted.heard,
           inserted.waited
    FROM input JOIN inserted ON inserted.id = input.id AND (inserted.heard OR inserted.waited)
    ORDER BY input.id, input.position
), fan_outs AS (
    SELECT request, array_agg(id ORDER BY position) FILTER (WHERE heard) AS event_ids,
           array_agg(id ORDER BY position) FILTER (WHERE waited) AS waited_ids
    FROM fanned GROUP BY request
), queued AS (
    INSERT INTO {jobs.QUEUE_TABLE} (priority, entrypoint, payload, status, execute_after)
    SELECT {_PROCESS_EVENT_COLUMNS}, 'queued', now()
    FROM fan_outs WHERE event_ids IS NOT NULL ORDER BY request
    RETURNING id
), matched AS (
    INSERT INTO {jobs.QUEUE_TABLE} (priority, entrypoint, payload, status, execute_after)
    SELECT {_MATCH_WAITS_COLUMNS}, 'queued', now()
    FROM fan_outs WHERE waited_ids IS NOT NULL ORDER BY request
    RETURNING id
)
SELECT (SELECT count(*) FROM queued) + (SELECT count(*) FROM matched)
"""


async def insert_event_groups(
    connection: asyncpg.Connection, groups: Sequence[EventGroup]
) -> list[list[str]]:
    """Store every group's events and enqueue their fan-out jobs; return each group's ids.

    One statement: the events are accepted exactly when it commits (by itself, or
    with the caller's transaction).
    """
    now = datetime.now(UTC)
    ids = [[event.id or new_id() for event in group.events] for group in groups]
    events = [event for group in groups for event in group.events]
    await connection.fetchval(
        _INSERT,
        [event_id for group_ids in ids for event_id in group_ids],
        [event.name for event in events],
        [event.data for event in events],
        [event.ts or now for event in events],
        [index for index, group in enumerate(groups, 1) for _ in group.events],
        [group.traceparent for group in groups],
    )
    return ids


async def prepare_insert(connection: asyncpg.Connection) -> None:
    """Run the acceptance statement once with no events, so that a new connection's first
    request does not pay for its planning and the queue triggers' compilation."""
    await connection.fetchval(_INSERT, [], [], [], [], [], [])


async def insert_events(
    connection: asyncpg.Connection,
    events: Sequence[NewEvent],
    traceparent: str | None = None,
) -> list[str]:
    """Store one request's events and enqueue their fan-out job; return their ids."""
    (ids,) = await insert_event_groups(connection, [EventGroup(events, traceparent)])
    return ids
