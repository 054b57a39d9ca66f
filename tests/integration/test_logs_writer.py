"""The log writer against PostgreSQL: batches, flush, retention in batches, an outage."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from structlog.testing import capture_logs

from reverb_store.logs import (
    LogDocument,
    LogQuery,
    LogWriter,
    PostgresLogs,
    PostgresSink,
    new_log_id,
)
from tests.e2e.processes import eventually


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    opened = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    yield opened
    await opened.close()


def document(at: datetime, message: str) -> LogDocument:
    return LogDocument(new_log_id(), at, "info", "user", message, run_id="run-1")


async def test_recorded_documents_are_written_in_order(pool: asyncpg.Pool) -> None:
    writer = LogWriter(PostgresSink(pool))
    await writer.start()
    now = datetime.now(UTC)
    try:
        for index in range(50):
            writer.record(document(now + timedelta(microseconds=index), f"line {index}"))
        async with asyncio.timeout(10):
            await writer.flush()
    finally:
        await writer.close()

    found = await PostgresLogs(pool).find(LogQuery(limit=100))
    assert [d.message for d in found] == [f"line {index}" for index in range(50)]
    assert writer.written == 50 and writer.dropped == 0


async def test_documents_past_the_retention_are_deleted_in_batches(pool: asyncpg.Pool) -> None:
    sink = PostgresSink(pool)
    now = datetime.now(UTC)
    old = [document(now - timedelta(days=40, seconds=index), "old") for index in range(7)]
    await sink.write([*old, document(now - timedelta(days=29), "recent")])
    writer = LogWriter(sink, retention=timedelta(days=30), purge_batch=3)

    assert await writer.purge() == 7

    found = await PostgresLogs(pool).find(LogQuery(limit=100))
    assert [d.message for d in found] == ["recent"]


async def test_a_sink_outage_is_buffered_within_its_bound_reported_and_written_after(
    pool: asyncpg.Pool,
) -> None:
    """The table goes away under a running writer: recording never waits, ten documents
    wait in the buffer, the rest are dropped and counted, the outage and the drops are
    logged once each; once the table is back the ten are written, in order."""
    writer = LogWriter(PostgresSink(pool), capacity=10, interval=0.05)
    await writer.start()
    now = datetime.now(UTC)
    try:
        with capture_logs() as logs:
            await pool.execute("ALTER TABLE reverb.logs RENAME TO logs_away")
            for index in range(15):
                writer.record(document(now + timedelta(microseconds=index), f"line {index}"))
            assert (writer.backlog, writer.dropped) == (10, 5)

            async def failed() -> bool:
                return writer.failures >= 1

            await eventually(failed, within=10, what="a failed write")
            await pool.execute("ALTER TABLE reverb.logs_away RENAME TO logs")
            async with asyncio.timeout(10):
                await writer.flush()
    finally:
        await writer.close()

    found = await PostgresLogs(pool).find(LogQuery(limit=100))
    assert [d.message for d in found] == [f"line {index}" for index in range(10)]
    assert (writer.written, writer.dropped, writer.backlog) == (10, 5, 0)
    events = [entry["event"] for entry in logs]
    assert events.count("log buffer full, dropping documents") == 1
    assert events.count("log sink write failed, documents kept") == 1
    (back,) = [entry for entry in logs if entry["event"] == "log sink reachable again"]
    assert back["dropped"] == 5
