"""Connections from the worker's pool, typed as the store's queries expect them."""

import contextlib
from collections.abc import AsyncIterator
from typing import cast

import asyncpg


@contextlib.asynccontextmanager
async def acquire(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection (a proxy that behaves as a Connection), released on exit."""
    async with pool.acquire() as proxy:
        yield cast(asyncpg.Connection, proxy)
