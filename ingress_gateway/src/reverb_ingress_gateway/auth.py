"""API-key checks for both APIs: `authorization: Bearer <key>`, verified against reverb.api_keys
(the gRPC side's interceptor is in `wire.rpc`), and each call's scope.

What a verified key may do is cached for `cache_seconds`, and an unknown key is
remembered as unknown for `unknown_cache_seconds`, so neither a busy client nor
a flood of wrong keys costs a database query per call. Both caches are bounded,
and dropped whenever reverb.api_keys changes: every gateway LISTENs on
`reverb_api_keys` (one dedicated connection, reconnected with backoff), which
migration 0005's trigger notifies on each insert, update (revocation) and
delete. While that connection is down nothing is cached, so a revocation, or a
key just created, takes effect at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, cast

import asyncpg
import structlog

from reverb_ingress_gateway.errors import PermissionDenied, Unauthenticated
from reverb_store.control import ApiKeyGrant, hash_key, verify
from reverb_store.control.api_keys import CHANNEL

logger = structlog.get_logger("reverb.ingress_gateway")

_MAX_CACHED = 10_000
# The application_name of the connection that listens for key changes.
LISTENER_NAME = "reverb-gateway-api-keys"
_FIRST_BACKOFF = 0.1
_MAX_BACKOFF = 5.0

# The key of the call being served (None in dev mode, where there are no keys).
CALLER: ContextVar[ApiKeyGrant | None] = ContextVar("reverb_api_key", default=None)


def bearer_key(authorization: str | None) -> str | None:
    """The key in an `Authorization: Bearer <key>` value, or None."""
    if not authorization:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def require(grant: ApiKeyGrant, scope: str, call: str) -> None:
    """PermissionDenied unless the key holds `scope`, which `call` needs."""
    if scope not in grant.scopes:
        held = ", ".join(sorted(grant.scopes))
        raise PermissionDenied(
            f"{call} needs an API key with the {scope!r} scope; this one has {held}"
        )


class _Expiring:
    """Values by key, each until a monotonic time; at most `size` (the oldest go first)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, tuple[Any, float]] = OrderedDict()

    def get(self, key: str, now: float) -> Any:
        found = self._items.get(key)
        if found is None:
            return None
        if found[1] <= now:
            del self._items[key]
            return None
        return found[0]

    def put(self, key: str, value: Any, until: float) -> None:
        self._items[key] = (value, until)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def pop(self, key: str) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class ApiKeys:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        database_url: str,
        cache_seconds: float,
        unknown_cache_seconds: float,
        timeout: float,
        max_cached: int = _MAX_CACHED,
    ) -> None:
        self._pool = pool
        self._database_url = database_url
        self._cache_seconds = cache_seconds
        self._unknown_cache_seconds = unknown_cache_seconds
        self._timeout = timeout
        self._trusted = _Expiring(max_cached)  # digest → ApiKeyGrant
        self._unknown = _Expiring(max_cached)  # digest → True
        self._listening = False
        self._listener: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._change = asyncio.Event()  # set (and replaced) whenever the caches are dropped
        # Database lookups made; a count for tests and metrics.
        self.lookups = 0
        # How many times the caches were dropped (a change notified, the listener (re)connected
        # or lost).
        self.generation = 0

    @property
    def listening(self) -> bool:
        """Whether changes to reverb.api_keys reach this gateway now (caches are in use)."""
        return self._listening

    async def start(self) -> None:
        """Start listening for key changes; waits (up to the database timeout) for the first
        connection, and keeps trying in the background when it fails."""
        self._listener = asyncio.create_task(self._listen(), name="reverb-gateway-api-keys")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), self._timeout)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None

    async def changed_since(self, generation: int) -> None:
        """Wait until the caches were dropped after `generation` (a hook for tests)."""
        while self.generation <= generation:
            await self._change.wait()

    async def grant(self, authorization: str | None) -> ApiKeyGrant | None:
        """What the key in the header may do, or None when it names no live key; database
        errors propagate."""
        key = bearer_key(authorization)
        if key is None:
            return None
        digest = hash_key(key)
        now = time.monotonic()
        if self._listening:
            trusted: ApiKeyGrant | None = self._trusted.get(digest, now)
            if trusted is not None:
                return trusted
            if self._unknown.get(digest, now) is not None:
                return None
        generation = self.generation
        self.lookups += 1
        async with self._pool.acquire(timeout=self._timeout) as connection:
            found = await verify(cast(asyncpg.Connection, connection), key)
        # A change notified while the lookup ran may have made its answer stale: keep it
        # only if none came.
        if self._listening and generation == self.generation:
            if found is None:
                self._trusted.pop(digest)
                self._unknown.put(digest, True, now + self._unknown_cache_seconds)
            else:
                self._unknown.pop(digest)
                self._trusted.put(digest, found, now + self._cache_seconds)
        return found

    async def authorize(self, authorization: str | None, scope: str, call: str) -> ApiKeyGrant:
        """The key's grant if it is live and holds `scope`; Unauthenticated or PermissionDenied
        otherwise."""
        found = await self.grant(authorization)
        if found is None:
            raise Unauthenticated("missing or invalid API key: send `authorization: Bearer <key>`")
        require(found, scope, call)
        return found

    def _invalidate(self) -> None:
        self._trusted.clear()
        self._unknown.clear()
        self.generation += 1
        self._change.set()
        self._change = asyncio.Event()

    def _notified(self, *_: object) -> None:
        self._invalidate()

    async def _listen(self) -> None:
        backoff = _FIRST_BACKOFF
        while True:
            lost = asyncio.Event()
            try:
                connection = await asyncpg.connect(
                    self._database_url,
                    timeout=self._timeout,
                    server_settings={"application_name": LISTENER_NAME},
                )
            except Exception as error:
                logger.warning(
                    "cannot listen for API key changes; retrying",
                    error=repr(error),
                    retry_in=backoff,
                )
                self._connected.set()  # start() stops waiting; nothing is cached meanwhile
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            try:
                connection.add_termination_listener(_setter(lost))
                await connection.add_listener(CHANNEL, self._notified)
                self._listening = True
                self._invalidate()  # changes made while nobody listened were not seen
                self._connected.set()
                backoff = _FIRST_BACKOFF
                await lost.wait()
                logger.warning("lost the connection that listens for API key changes")
            except Exception as error:
                logger.warning(
                    "listening for API key changes failed; retrying",
                    error=repr(error),
                    retry_in=backoff,
                )
                failed = True
            else:
                failed = False
            finally:
                if self._listening:
                    self._listening = False
                    self._invalidate()
                if not connection.is_closed():
                    connection.terminate()
            if failed:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    def set_event(_: object) -> None:
        event.set()

    return set_event
