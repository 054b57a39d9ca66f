"""Webhook deliveries: the raw request a source accepted, and the event it became.

A delivery and its event are stored by one statement (so together or not at all): the
delivery row first, and the event with its fan-out job only if the row was new. A delivery
the provider sends again (the same source and delivery id) stores nothing and gets the
first delivery's event id back.
"""

from collections.abc import Mapping, Sequence
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


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery to store, with its event (JSON text of an object) and trace context."""

    delivery: Delivery
    event_name: str
    event_data: str
    traceparent: str | None = None


_PROCESS_EVENT_COLUMNS = jobs.PROCESS_EVENT.sql_columns(
    event_ids="ARRAY[event.id]", traceparent="input.traceparent"
)

_MATCH_WAITS_COLUMNS = jobs.MATCH_WAITS.sql_columns(
    event_ids="ARRAY[event.id]", traceparent="input.traceparent"
)

# Several requests' deliveries in one statement (the gateway group-commits them): the
# deliveries, then the events of the rows that are new, with their fan-out jobs (and a
# match_waits job where a wait used the name). A delivery id stored before answers the
# first delivery's event id (a redelivery); one repeated within the statement belongs
# to its first occurrence (`accept_deliveries` answers the others).
_ACCEPT = f"""
WITH input AS MATERIALIZED (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::jsonb[], $7::bytea[], $8::jsonb[], $9::text[])
        WITH ORDINALITY AS t(id, source, delivery_id, event_id, event_name, headers, body,
                             data, traceparent, position)
), delivery AS (
    INSERT INTO reverb.webhook_deliveries
        (id, source, delivery_id, event_id, event_name, headers, body)
    SELECT id, source, delivery_id, event_id, event_name, headers, body
    FROM input ORDER BY position
    ON CONFLICT (source, delivery_id) WHERE delivery_id IS NOT NULL DO NOTHING
    RETURNING event_id
), event AS (
    INSERT INTO reverb.events (id, name, data, ts)
    SELECT input.event_id, input.event_name, input.data, now()
    FROM input JOIN delivery ON delivery.event_id = input.event_id
    ORDER BY input.position
    RETURNING id, EXISTS (SELECT FROM reverb.triggers t WHERE t.event_name = events.name) AS heard,
              EXISTS (SELECT FROM reverb.wait_keys k WHERE k.event_name = events.name) AS waited
), queued AS (
    INSERT INTO {jobs.QUEUE_TABLE} (priority, entrypoint, payload, status, execute_after)
    SELECT {_PROCESS_EVENT_COLUMNS}, 'queued'::pgqueuer_status, now()
    FROM event JOIN input ON input.event_id = event.id WHERE event.heard
    UNION ALL
    SELECT {_MATCH_WAITS_COLUMNS}, 'queued'::pgqueuer_status, now()
    FROM event JOIN input ON input.event_id = event.id WHERE event.waited
    RETURNING id
)
SELECT delivery.event_id AS new_event,
       CASE WHEN delivery.event_id IS NULL AND input.delivery_id IS NOT NULL THEN
           (SELECT w.event_id FROM reverb.webhook_deliveries w
            WHERE w.source = input.source AND w.delivery_id = input.delivery_id)
       END AS earlier_event
FROM input LEFT JOIN delivery ON delivery.event_id = input.event_id
ORDER BY input.position
"""


async def accept_deliveries(
    connection: asyncpg.Connection, deliveries: Sequence[NewDelivery]
) -> list[Accepted]:
    """Store each delivery and its event, unless its source stored its delivery id
    before (or earlier in `deliveries`): then that first delivery's event id, and
    nothing stored. One statement: atomic by itself, or with the caller's transaction."""
    event_ids = [new_id() for _ in deliveries]
    rows = await connection.fetch(
        _ACCEPT,
        [new_id() for _ in deliveries],
        [item.delivery.source for item in deliveries],
        [item.delivery.delivery_id for item in deliveries],
        event_ids,
        [item.event_name for item in deliveries],
        [orjson.dumps(dict(item.delivery.headers)).decode() for item in deliveries],
        [item.delivery.body for item in deliveries],
        [item.event_data for item in deliveries],
        [item.traceparent for item in deliveries],
    )
    accepted: list[Accepted] = []
    first: dict[tuple[str, str], str] = {}  # this statement's new deliveries, by id
    for item, row in zip(deliveries, rows, strict=True):
        key = (item.delivery.source, item.delivery.delivery_id or "")
        if row["new_event"] is not None:
            accepted.append(Accepted(row["new_event"], True))
            if item.delivery.delivery_id is not None:
                first[key] = row["new_event"]
            continue
        earlier = row["earlier_event"] or first.get(key)
        if earlier is None:
            # The first delivery committed after this statement's snapshot was taken.
            earlier = await connection.fetchval(
                "SELECT event_id FROM reverb.webhook_deliveries"
                " WHERE source = $1 AND delivery_id = $2",
                item.delivery.source,
                item.delivery.delivery_id,
            )
        accepted.append(Accepted(earlier, False))
    return accepted


async def accept_delivery(
    connection: asyncpg.Connection,
    delivery: Delivery,
    event_name: str,
    event_data: str,
    traceparent: str | None = None,
) -> Accepted:
    """`accept_deliveries` of one delivery."""
    (accepted,) = await accept_deliveries(
        connection, [NewDelivery(delivery, event_name, event_data, traceparent)]
    )
    return accepted


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
