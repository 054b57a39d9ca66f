"""The worker's connection pool, connections from it typed as the store's queries expect,
and connecting at start while PostgreSQL refuses connections."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TypeVar, cast

import asyncpg
import structlog

from reverb_queue_worker.backoff import HOST_CAP, backoff
from reverb_store import execution

_log = structlog.get_logger("reverb.queue_worker")

Opened = TypeVar("Opened")

# What PostgreSQL answers when it cannot take a connection now, but may later: nothing
# listens (yet), too many clients (SQLSTATE class 53), starting up or shutting down
# (class 57), a connection failure (class 08). A bad password, an unknown role or
# database (classes 28, 3D) and a missing schema are configuration errors: not retried.
REFUSALS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.OperatorInterventionError,
    asyncpg.ConnectionDoesNotExistError,
)


async def retrying_refusals(
    connect: Callable[[], Awaitable[Opened]], *, base: timedelta, what: str
) -> Opened:
    """`await connect()`, again and again with backoff (from `base`, up to 30 s) for as long
    as PostgreSQL refuses connections (`REFUSALS`); each retry is logged."""
    failures = 0
    while True:
        try:
            return await connect()
        except REFUSALS as error:
            delay = backoff(failures, base=base, cap=HOST_CAP)
            failures += 1
            _log.warning(
                "PostgreSQL refused a connection; retrying",
                opening=what,
                error=f"{type(error).__name__}: {error}",
                retry=failures,
                retry_in_seconds=round(delay.total_seconds(), 3),
            )
            await asyncio.sleep(delay.total_seconds())


async def open_pool(database_url: str, size: int) -> asyncpg.Pool:
    """A pool with all its connections open and their fan-out and claim statements
    prepared: none is opened (TLS negotiation, type introspection) or warmed up (a new
    backend plans statements and compiles triggers) while a run waits for it."""
    return await asyncpg.create_pool(
        database_url, min_size=size, max_size=size, reset=_release_as_is, init=_prepare
    )


async def _prepare(connection: asyncpg.Connection) -> None:
    await execution.prepare_fan_out(connection)
    await execution.prepare_claim(connection)


async def _release_as_is(connection: asyncpg.Connection) -> None:
    """Release a connection without asyncpg's reset query (a round trip per release): the
    worker leaves no session state on pooled connections (no LISTEN, SET, advisory lock or
    cursor). A transaction a cancelled task left open is rolled back."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


@contextlib.asynccontextmanager
async def acquire(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection (a proxy that behaves as a Connection), released on exit."""
    async with pool.acquire() as proxy:
        yield cast(asyncpg.Connection, proxy)
