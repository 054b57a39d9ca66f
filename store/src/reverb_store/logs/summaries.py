"""Runs as the logs API summarises them (`/logs/functions`, `/logs/events/{id}`): read from
reverb.runs, whose status is the run's own (not guessed from its last log line, as the
original did), in (created_at, id) order."""

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    function_id: str
    status: str
    invoked: datetime
    last_update: datetime


@dataclass(frozen=True, slots=True)
class SummaryQuery:
    """Runs in (created_at, id) order: of one event, of a function id, of functions with a
    name, created from `start` (inclusive) to `end` (exclusive); `offset` skipped."""

    limit: int
    offset: int = 0
    event_id: str | None = None
    function_id: str | None = None
    function_name: str | None = None
    start: datetime | None = None
    end: datetime | None = None


_SELECT = (
    "SELECT r.id, r.function_id, r.status, r.created_at,"
    " greatest(r.created_at, r.started_at, r.ended_at, r.updated_at) AS last_update"
    " FROM reverb.runs r"
)


async def run_summaries(connection: asyncpg.Connection, query: SummaryQuery) -> list[RunSummary]:
    clauses: list[str] = []
    arguments: list[object] = []

    def value(item: object) -> str:
        arguments.append(item)
        return f"${len(arguments)}"

    if query.event_id is not None:
        clauses.append(f"r.event_ids @> ARRAY[{value(query.event_id)}::text]")
    if query.function_id is not None:
        clauses.append(f"r.function_id = {value(query.function_id)}")
    if query.function_name is not None:
        clauses.append(
            "r.function_id IN (SELECT f.id FROM reverb.functions f"
            f" WHERE f.name = {value(query.function_name)})"
        )
    if query.start is not None:
        clauses.append(f"r.created_at >= {value(query.start)}")
    if query.end is not None:
        clauses.append(f"r.created_at < {value(query.end)}")
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = (
        f"{_SELECT}{where} ORDER BY r.created_at, r.id"
        f" LIMIT {value(query.limit)} OFFSET {value(query.offset)}"
    )
    rows = await connection.fetch(sql, *arguments)
    return [
        RunSummary(
            row["id"], row["function_id"], row["status"], row["created_at"], row["last_update"]
        )
        for row in rows
    ]


async def event_exists(connection: asyncpg.Connection, event_id: str) -> bool:
    return bool(
        await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM reverb.events WHERE id = $1)", event_id
        )
    )


async def run_exists(connection: asyncpg.Connection, run_id: str) -> bool:
    return bool(
        await connection.fetchval("SELECT EXISTS (SELECT 1 FROM reverb.runs WHERE id = $1)", run_id)
    )
