"""Ticks fired through the API: a schedule triggered now, or a range backfilled.

The gateway stores each tick's event (the scheduler's ids, so a tick already run is
skipped: its event exists) and one `cron_fire` job for the new ones; a worker starts
their runs, as the gates decide. These runs do not count as the schedule's previous
run for `overlap`, and ignore it: asked for, they start.
"""

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from reverb.schedules import CronSchedule
from reverb_store import jobs
from reverb_store.cron.firing import CRON_EVENT, event_data, event_id
from reverb_store.ids import EventId

# Ticks one backfill may run.
MAX_BACKFILL = 1_000


class NoSchedule(Exception):
    """The function is unknown, or has no cron trigger."""

    def __init__(self, function_id: str, *, known: bool) -> None:
        what = "has no cron trigger" if known else "is not registered"
        super().__init__(f"function {function_id!r} {what}")
        self.known = known


class BackfillTooLarge(ValueError):
    """The range holds more ticks than one backfill runs."""


@dataclass(frozen=True, slots=True)
class Stored:
    """The events stored for new ticks, and how many ticks had run already."""

    event_ids: tuple[EventId, ...]
    already_run: int


async def trigger(connection: asyncpg.Connection, function_id: str) -> Stored:
    """Fire one tick of the function's (first) schedule now."""
    async with connection.transaction():
        schedules = await _schedules(connection, function_id)
        now: datetime = await connection.fetchval("SELECT date_trunc('milliseconds', now())")
        return await _store(connection, function_id, [(schedules[0], now)])


async def backfill(
    connection: asyncpg.Connection, function_id: str, start: datetime, end: datetime
) -> Stored:
    """Fire every tick of the function's schedules from `start` to `end` (inclusive) once."""
    async with connection.transaction():
        schedules = await _schedules(connection, function_id)
        ticks: dict[datetime, CronSchedule] = {}
        for schedule in schedules:
            for tick in schedule.ticks_between(start, end, MAX_BACKFILL + 1):
                ticks.setdefault(tick, schedule)
        if len(ticks) > MAX_BACKFILL:
            raise BackfillTooLarge(
                f"the range holds more than {MAX_BACKFILL} ticks: backfill it in parts"
            )
        chosen = sorted(ticks.items())
        return await _store(connection, function_id, [(item, tick) for tick, item in chosen])


async def _schedules(connection: asyncpg.Connection, function_id: str) -> list[CronSchedule]:
    rows = await connection.fetch(
        "SELECT cron, timezone FROM reverb.cron_schedules WHERE function_id = $1 ORDER BY id",
        function_id,
    )
    if rows:
        return [CronSchedule(row["cron"], row["timezone"]) for row in rows]
    known = await connection.fetchval(
        "SELECT EXISTS (SELECT FROM reverb.functions WHERE id = $1)", function_id
    )
    raise NoSchedule(function_id, known=bool(known))


async def _store(
    connection: asyncpg.Connection,
    function_id: str,
    ticks: list[tuple[CronSchedule, datetime]],
) -> Stored:
    ids = [event_id(function_id, tick) for _, tick in ticks]
    rows = await connection.fetch(
        "INSERT INTO reverb.events (id, name, data, ts)"
        " SELECT id, name, data, ts"
        " FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::timestamptz[])"
        " WITH ORDINALITY AS t(id, name, data, ts, position)"
        " ORDER BY position ON CONFLICT (id) DO NOTHING RETURNING id",
        ids,
        [CRON_EVENT] * len(ticks),
        [event_data(schedule, tick) for schedule, tick in ticks],
        [tick for _, tick in ticks],
    )
    new = {row["id"] for row in rows}
    stored = tuple(EventId(item) for item in ids if item in new)
    if stored:
        await jobs.enqueue(connection, [jobs.FireCron(function_id, stored)])
    return Stored(stored, len(ticks) - len(stored))
