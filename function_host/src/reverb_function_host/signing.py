"""Worker-to-host stream signing: HMAC-SHA256 over "<unix seconds>:<gRPC method>".

The worker sends `x-reverb-signature: t=<unix seconds>,s=<hex digest>` when it opens a
stream; a signature older (or newer) than five minutes is refused. It only admits the
stream: every Start on it carries its own MAC (`authentication`). During a key rotation
a signature made with any of the host's keys is accepted. Every refusal is logged (reason,
peer, method; never the key or the signature) and answered UNAUTHENTICATED.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

import grpc
import structlog
from grpc import aio

HEADER = "x-reverb-signature"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
MAX_AGE_SECONDS = 300
# t: at most 12 ASCII digits; s: 64 lowercase hex digits.
_FORMAT = re.compile(r"t=([0-9]{1,12}),s=([0-9a-f]{64})")

log = structlog.get_logger("reverb.function_host")


def signature(key: bytes, method: str, timestamp: int) -> str:
    """The header value for calling `method` at `timestamp` (unix seconds)."""
    digest = hmac.new(key, f"{timestamp}:{method}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},s={digest}"


def signature_problem(
    keys: Sequence[bytes], method: str, header: str | None, now: float
) -> str | None:
    """Why `header` does not sign a call of `method` now with one of `keys`; None when it
    does."""
    if not header:
        return f"missing {HEADER} metadata"
    match = _FORMAT.fullmatch(header)
    if match is None:
        return f"malformed {HEADER} metadata (expected t=<unix seconds>,s=<64 hex digits>)"
    timestamp = int(match.group(1))
    if abs(now - timestamp) > MAX_AGE_SECONDS:
        return "expired signature"
    given = header.encode()
    valid = False
    for key in keys:  # every key is tried: the time taken does not tell which one matched
        valid |= hmac.compare_digest(signature(key, method, timestamp).encode(), given)
    return None if valid else "invalid signature"


class SignatureInterceptor(aio.ServerInterceptor):
    """Rejects calls to methods under `prefix` that are not signed with one of `keys`."""

    def __init__(self, keys: Sequence[bytes], prefix: str) -> None:
        self._keys = tuple(keys)
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
        problem = signature_problem(self._keys, method, header, time.time())
        if problem is None:
            return handler
        return _refusal(handler, method, problem)


def _metadata_value(metadata: Any, key: str) -> str | None:
    for name, value in metadata or ():
        if name == key:
            if isinstance(value, bytes):
                return value.decode("ascii", errors="replace")
            return str(value)
    return None


def _refusal(handler: Handler, method: str, problem: str) -> Handler:
    async def refuse(request: object, context: aio.ServicerContext[Any, Any]) -> None:
        log.warning("refused an unsigned call", reason=problem, peer=context.peer(), method=method)
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
