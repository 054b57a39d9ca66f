"""The log writer against PostgreSQL: batches, flush, retention in batches."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from reverb_store.logs import (
    LogDocument,
    LogQuery,
    LogWriter,
    PostgresLogs,
    PostgresSink,
    new_log_id,
)


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
