"""The worker's connection pool, and connections from it typed as the store's queries expect."""

import contextlib
from collections.abc import AsyncIterator
from typing import cast

import asyncpg

from reverb_store import execution


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
