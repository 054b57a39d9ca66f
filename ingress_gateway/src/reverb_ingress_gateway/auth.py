"""API-key checks for both APIs: `authorization: Bearer <key>`, verified against reverb.api_keys
(the gRPC side's interceptor is in `wire.rpc`).

A verified key's digest is trusted for `cache_seconds` (revoking a key takes
effect within that time), so a busy client costs no database query per call.
"""

from __future__ import annotations

import time
from typing import cast

import asyncpg

from reverb_store.control import hash_key, verify

_MAX_CACHED = 10_000


def bearer_key(authorization: str | None) -> str | None:
    """The key in an `Authorization: Bearer <key>` value, or None."""
    if not authorization:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


class ApiKeys:
    def __init__(self, pool: asyncpg.Pool, *, cache_seconds: float, timeout: float) -> None:
        self._pool = pool
        self._cache_seconds = cache_seconds
        self._timeout = timeout
        # key digest → monotonic time until which it is trusted
        self._trusted: dict[str, float] = {}

    async def allows(self, authorization: str | None) -> bool:
        """Whether the header names a live key; database errors propagate."""
        key = bearer_key(authorization)
        if key is None:
            return False
        digest = hash_key(key)
        now = time.monotonic()
        if self._trusted.get(digest, 0.0) > now:
            return True
        async with self._pool.acquire(timeout=self._timeout) as connection:
            key_id = await verify(cast(asyncpg.Connection, connection), key)
        if key_id is None:
            self._trusted.pop(digest, None)
            return False
        if len(self._trusted) >= _MAX_CACHED:
            self._trusted = {d: t for d, t in self._trusted.items() if t > now}
            if len(self._trusted) >= _MAX_CACHED:
                self._trusted.clear()
        self._trusted[digest] = now + self._cache_seconds
        return True
