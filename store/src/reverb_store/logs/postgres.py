"""The PostgreSQL sink (`REVERB_LOG_SINK=postgres`, the default): table `reverb.logs`
(migration 0012), written with one COPY per batch, read by primary-key ranges."""

from datetime import datetime
from typing import Any

import asyncpg

from reverb_store.execution.records import ErrorRecord
from reverb_store.logs.documents import LogDocument
from reverb_store.logs.queries import LogQuery

COLUMNS = (
    "ts",
    "id",
    "level",
    "kind",
    "message",
    "event_id",
    "event_name",
    "run_id",
    "function_id",
    "step_id",
    "attempt",
    "error",
    "fields",
    "trace_id",
    "span_id",
)

_SELECT = (
    "SELECT ts, id, level, kind, message, event_id, event_name, run_id, function_id,"
    " step_id, attempt, error::text AS error, fields::text AS fields, trace_id, span_id"
    " FROM reverb.logs"
)

# Oldest first from the front of the primary key; SKIP LOCKED lets two workers purge at once.
_PURGE = """
DELETE FROM reverb.logs
WHERE (ts, id) IN (
    SELECT ts, id FROM reverb.logs WHERE ts < $1 ORDER BY ts, id LIMIT $2 FOR UPDATE SKIP LOCKED
)
"""


class PostgresSink:
    """Writes batches with COPY on a connection of the pool it is given."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def open(self) -> None:
        """Nothing to prepare: the table is the migrations'."""

    async def write(self, documents: list[LogDocument]) -> None:
        records = [_row(document) for document in documents]
        async with self._pool.acquire() as connection:
            await connection.copy_records_to_table(
                "logs", schema_name="reverb", columns=COLUMNS, records=records
            )

    async def purge(self, older_than: datetime, limit: int) -> int:
        async with self._pool.acquire() as connection:
            status: str = await connection.execute(_PURGE, older_than, limit)
        return int(status.rsplit(" ", 1)[-1])

    async def close(self) -> None:
        """The pool is its owner's to close."""


class PostgresLogs:
    """Reads documents for the logs API."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def find(self, query: LogQuery) -> list[LogDocument]:
        sql, arguments = build_select(query)
        async with self._pool.acquire() as connection:
            rows = await connection.fetch(sql, *arguments)
        return [_document(row) for row in rows]


def build_select(query: LogQuery) -> tuple[str, list[Any]]:
    """The parameterized SELECT for a query (its clauses fixed text, its values $n)."""
    clauses: list[str] = []
    arguments: list[Any] = []

    def value(item: Any) -> str:
        arguments.append(item)
        return f"${len(arguments)}"

    if query.after is not None:
        clauses.append(f"(ts, id) > ({value(query.after.timestamp)}, {value(query.after.id)})")
    if query.start is not None:
        clauses.append(f"ts >= {value(query.start)}")
    if query.end is not None:
        clauses.append(f"ts < {value(query.end)}")
    if query.run_id is not None:
        clauses.append(f"run_id = {value(query.run_id)}")
    if query.event_name is not None:
        clauses.append(f"event_name = {value(query.event_name)}")
    levels = query.levels()
    if levels == ("error",):
        clauses.append("level = 'error'")  # the partial index logs_errors
    elif levels is not None:
        clauses.append(f"level = ANY({value(list(levels))}::text[])")
    if query.kinds is not None:
        clauses.append(f"kind = ANY({value(list(query.kinds))}::text[])")
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    order = " ORDER BY run_id, ts, id" if query.run_id is not None else " ORDER BY ts, id"
    sql = f"{_SELECT}{where}{order} LIMIT {value(query.limit)}"
    if query.offset:
        sql += f" OFFSET {value(query.offset)}"
    return sql, arguments


def _row(document: LogDocument) -> tuple[Any, ...]:
    error = document.error
    return (
        document.timestamp,
        document.id,
        document.level,
        document.kind,
        document.message,
        document.event_id,
        document.event_name,
        document.run_id,
        document.function_id,
        document.step_id,
        document.attempt,
        None if error is None else error.to_json(),
        document.fields,
        document.trace_id,
        document.span_id,
    )


def _document(row: asyncpg.Record) -> LogDocument:
    error = row["error"]
    return LogDocument(
        id=row["id"],
        timestamp=row["ts"],
        level=row["level"],
        kind=row["kind"],
        message=row["message"],
        event_id=row["event_id"],
        event_name=row["event_name"],
        run_id=row["run_id"],
        function_id=row["function_id"],
        step_id=row["step_id"],
        attempt=row["attempt"],
        error=None if error is None else ErrorRecord.from_json(error),
        fields=row["fields"],
        trace_id=row["trace_id"],
        span_id=row["span_id"],
    )
