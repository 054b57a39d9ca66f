"""A worker starting while PostgreSQL refuses connections waits for it; a configuration
error stops it at once."""

import asyncio
import uuid
from collections.abc import AsyncIterator, MutableMapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import pytest
import structlog

from reverb_function_host import Host
from reverb_queue_worker import start as start_worker
from reverb_queue_worker.worker import connect_queue
from tests.e2e.processes import eventually
from tests.integration.test_worker_hosts import app, host, send, wait_status
from tests.integration.test_worker_runs import register, worker_settings

__all__ = ["host"]  # the fixture, shared

# The worker's pool (4: its checkpoint writer keeps two) and its queue connection (1).
POOL_SIZE = 4
WORKER_CONNECTIONS = POOL_SIZE + 1


def as_role(url: str, role: str) -> str:
    parts = urlsplit(url)
    netloc = f"{role}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
async def limited_role(connection: asyncpg.Connection) -> AsyncIterator[str]:
    """A role that may open only as many connections as a worker needs, with the rights a
    worker needs in the test's database (a superuser would ignore the limit)."""
    role = f"reverb_limited_{uuid.uuid4().hex[:10]}"
    await connection.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT {WORKER_CONNECTIONS}")
    for schema in ("reverb", "public"):
        await connection.execute(
            f"GRANT ALL ON SCHEMA {schema} TO {role};"
            f" GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {role};"
            f" GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"
        )
    yield role
    await connection.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
    )
    await connection.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


RETRY = "PostgreSQL refused a connection; retrying"


def retries(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == RETRY]


async def test_a_worker_waits_while_postgres_has_too_many_clients(
    database_url: str, connection: asyncpg.Connection, limited_role: str, host: Host
) -> None:
    await register(connection, app, f"127.0.0.1:{host.port}")
    url = as_role(database_url, limited_role)
    # Other clients of the role take every connection it may open.
    others = [await asyncpg.connect(url) for _ in range(WORKER_CONNECTIONS)]
    settings = worker_settings(url).model_copy(update={"database_pool_size": POOL_SIZE})
    with structlog.testing.capture_logs() as logs:
        starting = asyncio.create_task(start_worker(settings))
        try:

            async def retried_twice() -> bool:
                return len(retries(logs)) >= 2

            await eventually(retried_twice, within=10, what="the worker to retry")
            assert not starting.done()
            for other in others:
                await other.close()
            worker = await asyncio.wait_for(starting, 10)
        finally:
            if not starting.done():
                starting.cancel()
    try:
        event_id = await send(connection, "test.greet", {"name": "patient"})
        run = await wait_status(connection, event_id, "completed")
    finally:
        await worker.stop()
    assert orjson.loads(run["output"]) == "hello patient"
    first = retries(logs)[0]
    assert "TooManyConnectionsError" in str(first["error"])
    assert first["log_level"] == "warning"


async def test_a_worker_gives_up_at_once_on_an_unknown_database(database_url: str) -> None:
    unknown = urlunsplit(urlsplit(database_url)._replace(path="/reverb_no_such_database"))
    with structlog.testing.capture_logs() as logs, pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncio.wait_for(start_worker(worker_settings(unknown)), 10)
    assert retries(logs) == []


async def test_the_queue_connection_plans_each_statement_with_its_values(
    database_url: str,
) -> None:
    """pgqueuer's statements are prepared on the worker's queue connection: after a few
    runs on a small table PostgreSQL would keep a generic plan, which cannot use the
    queue's partial indexes (the status is a parameter) and scans the whole table once it
    has grown (10,000 delayed jobs here, the timeouts of 10,000 waiting runs)."""
    connection = await connect_queue(worker_settings(database_url))
    try:
        assert await connection.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
        await connection.execute(
            "PREPARE queued(pgqueuer_status, text[]) AS SELECT count(*) FROM pgqueuer"
            " WHERE status = $1 AND entrypoint = ANY($2) AND execute_after <= now()"
        )
        for _ in range(10):
            await connection.execute("EXECUTE queued('queued', '{advance_run,wake_run}')")
        await connection.execute(
            "INSERT INTO pgqueuer (priority, entrypoint, payload, status, execute_after)"
            " SELECT 1, 'wake_run', convert_to('{}', 'UTF8'), 'queued',"
            " now() + interval '1 hour' FROM generate_series(1, 10000)"
        )
        plan = await connection.fetchval(
            "EXPLAIN (FORMAT JSON) EXECUTE queued('queued', '{advance_run,wake_run}')"
        )
    finally:
        await connection.close()
    assert "Seq Scan" not in plan, plan
    assert "pgqueuer_ep_ea_idx" in plan, plan
