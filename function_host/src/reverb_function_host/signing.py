"""Worker-to-host request signing: HMAC-SHA256 over "<unix seconds>:<gRPC method>".

The worker sends `x-reverb-signature: t=<unix seconds>,s=<hex digest>`; a signature older
(or newer) than five minutes is refused, so a captured one cannot be replayed for long.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from grpc import aio

HEADER = "x-reverb-signature"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
MAX_AGE_SECONDS = 300


def signature(key: bytes, method: str, timestamp: int) -> str:
    """The header value for calling `method` at `timestamp` (unix seconds)."""
    digest = hmac.new(key, f"{timestamp}:{method}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},s={digest}"


def signature_problem(key: bytes, method: str, header: str | None, now: float) -> str | None:
    """Why `header` does not sign a call of `method` now; None when it does."""
    if not header:
        return f"missing {HEADER} metadata"
    fields = dict(part.partition("=")[::2] for part in header.split(","))
    timestamp, digest = fields.get("t", ""), fields.get("s", "")
    if not timestamp.isdigit() or not digest:
        return f"malformed {HEADER} metadata (expected t=<unix seconds>,s=<hex>)"
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        return "expired signature"
    expected = signature(key, method, int(timestamp))
    if not hmac.compare_digest(expected.encode(), f"t={timestamp},s={digest}".encode()):
        return "invalid signature"
    return None


class SignatureInterceptor(aio.ServerInterceptor):
    """Rejects calls to methods under `prefix` that are not signed with `key`."""

    def __init__(self, key: bytes, prefix: str) -> None:
        self._key = key
        self._prefix = prefix

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(self._prefix):
            return handler
        header = _metadata_value(handler_call_details.invocation_metadata, HEADER)
        problem = signature_problem(self._key, method, header, time.time())
        if problem is None:
            return handler
        return _refusal(handler, problem)


def _metadata_value(metadata: Any, key: str) -> str | None:
    for name, value in metadata or ():
        if name == key:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _refusal(handler: Handler, problem: str) -> Handler:
    async def refuse(request: object, context: aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)

    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return make(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
