"""API-key checks for both APIs: `authorization: Bearer <key>`, verified against reverb.api_keys.

A verified key's digest is trusted for `cache_seconds` (revoking a key takes
effect within that time), so a busy client costs no database query per call.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import asyncpg
import grpc

from reverb_ingress_gateway.calls import as_gateway_error
from reverb_ingress_gateway.errors import ERROR_CODE_METADATA
from reverb_store.control import hash_key, verify

_MAX_CACHED = 10_000
_PROTECTED_PREFIX = "/reverb.v1.Ingress/"


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


def _denial(status: grpc.StatusCode, code: str, message: str) -> grpc.RpcMethodHandler[Any, Any]:
    async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(status, message, ((ERROR_CODE_METADATA, code),))

    return grpc.unary_unary_rpc_method_handler(deny)


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Refuses reverb.v1.Ingress calls without a live key; health and reflection stay open."""

    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if not handler_call_details.method.startswith(_PROTECTED_PREFIX):
            return await continuation(handler_call_details)
        authorization = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                authorization = value if isinstance(value, str) else value.decode()
        try:
            allowed = await self._keys.allows(authorization)
        except Exception as raised:
            error = as_gateway_error(raised, "authentication")
            return _denial(error.grpc_status, error.code, error.message)
        if allowed:
            return await continuation(handler_call_details)
        return _denial(
            grpc.StatusCode.UNAUTHENTICATED,
            "unauthenticated",
            "missing or invalid API key: send `authorization: Bearer <key>`",
        )
