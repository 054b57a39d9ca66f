"""Cron schedules as registration writes them and listings read them.

A schedule is keyed by (function, expression, zone): a registration that keeps a cron
keeps its row (its next tick, its last run, its counts) and updates its policies; a
changed expression or zone is a new schedule from its next tick; a removed one is
deleted, so it stops firing (a `cron_tick` job that finds nothing due ends). New rows
get a `cron_tick` job due now, committed with the registration: the worker taking it
fires what is due and schedules the next tick's job.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from reverb.schedules import CatchUp, CronSchedule, Overlap
from reverb_store import jobs
from reverb_store.cron.policies import jitter_offset


@dataclass(frozen=True, slots=True)
class ScheduleDefinition:
    function_id: str
    cron: str
    timezone: str
    overlap: Overlap
    catch_up: CatchUp
    catch_up_window: timedelta
    jitter: timedelta


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """A schedule as `GET /functions` shows it: its definition and its state."""

    definition: ScheduleDefinition
    next_at: datetime
    last_at: datetime | None
    missed: int
    skipped: int


# This app's schedules that its new definitions no longer have.
_DELETE_REMOVED = """
DELETE FROM reverb.cron_schedules s USING reverb.functions f
WHERE f.id = s.function_id AND f.app_id = $1
  AND (s.function_id, s.cron, s.timezone) NOT IN (
      SELECT * FROM unnest($2::text[], $3::text[], $4::text[]))
"""

_UPSERT = """
INSERT INTO reverb.cron_schedules AS s
    (function_id, cron, timezone, overlap, catch_up, catch_up_window, jitter, next_at, fire_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::interval[], $7::interval[], $8::timestamptz[], $9::timestamptz[])
ON CONFLICT (function_id, cron, timezone) DO UPDATE
    SET overlap = excluded.overlap, catch_up = excluded.catch_up,
        catch_up_window = excluded.catch_up_window, jitter = excluded.jitter,
        updated_at = now()
RETURNING (xmax = 0) AS inserted
"""


async def sync_schedules(
    connection: asyncpg.Connection,
    app_id: str,
    definitions: Sequence[ScheduleDefinition],
    now: datetime,
) -> None:
    """Make the app's schedules these (inside the registration's transaction, after its
    functions were written)."""
    await connection.execute(
        _DELETE_REMOVED,
        app_id,
        [item.function_id for item in definitions],
        [item.cron for item in definitions],
        [item.timezone for item in definitions],
    )
    if not definitions:
        return
    next_ticks = [CronSchedule(item.cron, item.timezone).after(now) for item in definitions]
    rows = await connection.fetch(
        _UPSERT,
        [item.function_id for item in definitions],
        [item.cron for item in definitions],
        [item.timezone for item in definitions],
        [item.overlap for item in definitions],
        [item.catch_up for item in definitions],
        [item.catch_up_window for item in definitions],
        [item.jitter for item in definitions],
        next_ticks,
        [
            tick + jitter_offset(item.function_id, tick, item.jitter)
            for item, tick in zip(definitions, next_ticks, strict=True)
        ],
    )
    if any(row["inserted"] for row in rows):
        await jobs.enqueue(connection, [jobs.CronTick()])


_LIST = """
SELECT function_id, cron, timezone, overlap, catch_up, catch_up_window, jitter, next_at,
       last_at, missed, skipped
FROM reverb.cron_schedules WHERE $1::text IS NULL OR function_id = $1
ORDER BY function_id, id
"""


async def list_schedules(
    connection: asyncpg.Connection, function_id: str | None = None
) -> list[ScheduleRecord]:
    """Every schedule (or the function's), by function then age."""
    records = []
    for row in await connection.fetch(_LIST, function_id):
        fields = dict(row)
        state = {name: fields.pop(name) for name in ("next_at", "last_at", "missed", "skipped")}
        records.append(ScheduleRecord(ScheduleDefinition(**fields), **state))
    return records
