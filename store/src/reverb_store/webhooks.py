"""Webhook deliveries: the raw request a source accepted, and the event it became.

A delivery and its event are stored by one statement (so together or not at all): the
delivery row first, and the event with its fan-out job only if the row was new. A delivery
the provider sends again (the same source and delivery id) stores nothing and gets the
first delivery's event id back.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from reverb_store import jobs
from reverb_store.events import NewEvent, insert_events
from reverb_store.ids import new_id


@dataclass(frozen=True, slots=True)
class Delivery:
    """A request as it arrived, but for its secret headers."""

    source: str
    # The provider's id of the delivery, or None.
    delivery_id: str | None
    # Lower-cased names; signature and credential headers removed.
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: str
    source: str
    delivery_id: str | None
    event_id: str
    event_name: str
    headers: dict[str, str]
    body: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Accepted:
    event_id: str
    # False: the delivery id was seen before; nothing was stored.
    new: bool


_PROCESS_EVENT_COLUMNS = jobs.PROCESS_EVENT.sql_columns(
    event_ids="ARRAY[event.id]", traceparent="$9::text"
)

_MATCH_WAITS_COLUMNS = jobs.MATCH_WAITS.sql_columns(
    event_ids="ARRAY[event.id]", traceparent="$9::text"
)

# The delivery, then (only if its row is new) the event and its fan-out job (and its
# match_waits job if a wait used its name).
_ACCEPT = f"""
WITH delivery AS (
    INSERT INTO reverb.webhook_deliveries
        (id, source, delivery_id, event_id, event_name, headers, body)
    VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)
    ON CONFLICT (source, delivery_id) WHERE delivery_id IS NOT NULL DO NOTHING
    RETURNING event_id
), event AS (
    INSERT INTO reverb.events (id, name, data, ts)
    SELECT $4, $5, $8::jsonb, now() FROM delivery
    RETURNING id, EXISTS (SELECT FROM reverb.triggers t WHERE t.event_name = events.name) AS heard,
              EXISTS (SELECT FROM reverb.wait_keys k WHERE k.event_name = events.name) AS waited
), queued AS (
    INSERT INTO {jobs.QUEUE_TABLE} (priority, entrypoint, payload, status, execute_after)
    SELECT {_PROCESS_EVENT_COLUMNS}, 'queued'::pgqueuer_status, now() FROM event WHERE event.heard
    UNION ALL
    SELECT {_MATCH_WAITS_COLUMNS}, 'queued'::pgqueuer_status, now() FROM event WHERE event.waited
    RETURNING id
)
SELECT (SELECT event_id FROM delivery) AS new_event,
       (SELECT count(*) FROM queued) AS queued,
       (SELECT event_id FROM reverb.webhook_deliveries
        WHERE source = $2 AND delivery_id = $3) AS earlier_event
"""


async def accept_delivery(
    connection: asyncpg.Connection,
    delivery: Delivery,
    event_name: str,
    event_data: str,
    traceparent: str | None = None,
) -> Accepted:
    """Store the delivery and its event (JSON text of an object), unless the source has
    stored this delivery id before: then its first event's id, and nothing stored."""
    event_id = new_id()
    row = await connection.fetchrow(
        _ACCEPT,
        new_id(),
        delivery.source,
        delivery.delivery_id,
        event_id,
        event_name,
        orjson.dumps(dict(delivery.headers)).decode(),
        delivery.body,
        event_data,
        traceparent,
    )
    assert row is not None
    if row["new_event"] is not None:
        return Accepted(row["new_event"], True)
    earlier = row["earlier_event"]
    if earlier is None:
        # The first delivery committed after this statement's snapshot was taken.
        earlier = await connection.fetchval(
            "SELECT event_id FROM reverb.webhook_deliveries WHERE source = $1 AND delivery_id = $2",
            delivery.source,
            delivery.delivery_id,
        )
    return Accepted(earlier, False)


_COLUMNS = "id, source, delivery_id, event_id, event_name, headers, body, received_at"


def _record(row: asyncpg.Record) -> DeliveryRecord:
    return DeliveryRecord(
        id=row["id"],
        source=row["source"],
        delivery_id=row["delivery_id"],
        event_id=row["event_id"],
        event_name=row["event_name"],
        headers=orjson.loads(row["headers"]),
        body=bytes(row["body"]),
        received_at=row["received_at"],
    )


async def list_deliveries(
    connection: asyncpg.Connection, *, source: str | None, limit: int, before: str | None = None
) -> list[DeliveryRecord]:
    """The newest deliveries first (of one source, or of all), at most `limit`, strictly
    before the delivery id `before`."""
    rows = await connection.fetch(
        f"SELECT {_COLUMNS} FROM reverb.webhook_deliveries"
        " WHERE ($1::text IS NULL OR source = $1) AND ($2::text IS NULL OR id < $2)"
        " ORDER BY id DESC LIMIT $3",
        source,
        before,
        limit,
    )
    return [_record(row) for row in rows]


async def get_delivery(connection: asyncpg.Connection, delivery: str) -> DeliveryRecord | None:
    row = await connection.fetchrow(
        f"SELECT {_COLUMNS} FROM reverb.webhook_deliveries WHERE id = $1", delivery
    )
    return None if row is None else _record(row)


async def replay_delivery(
    connection: asyncpg.Connection,
    record: DeliveryRecord,
    event_data: str,
    traceparent: str | None = None,
) -> str:
    """Emit the delivery's event again (a new event, the delivery's name); its id."""
    (event_id,) = await insert_events(
        connection, [NewEvent(record.event_name, event_data)], traceparent
    )
    return event_id
