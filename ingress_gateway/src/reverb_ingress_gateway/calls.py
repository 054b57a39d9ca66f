"""What every Ingress call shares: its span, and errors turned into gRPC statuses.

A servicer method raises GatewayError for what the caller got wrong; the
`rpc` decorator aborts the call with the error's status and its code in the
`reverb-error-code` trailing metadata. A database that cannot be reached
becomes UNAVAILABLE; anything else is logged and becomes INTERNAL with no
detail for the caller.
"""

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn, Protocol, TypeVar

import grpc
import structlog
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode

from reverb_ingress_gateway.errors import (
    ERROR_CODE_METADATA,
    GatewayError,
    Internal,
    Unavailable,
    is_database_unavailable,
)
from reverb_ingress_gateway.spans import server_span
from reverb_telemetry import context_from_metadata

Metadata = grpc.aio.Metadata | Sequence[tuple[str, str | bytes]]

logger = structlog.get_logger("reverb.ingress_gateway")


class CallContext(Protocol):
    """The part of grpc.aio.ServicerContext the servicer uses (the HTTP API provides it too)."""

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()
    ) -> NoReturn: ...

    def invocation_metadata(self) -> grpc.aio.Metadata | None: ...


Service = TypeVar("Service")
Request = TypeVar("Request")
Response = TypeVar("Response")
Method = Callable[[Service, Request, CallContext], Awaitable[Response]]


def _parent(context: CallContext) -> Context | None:
    """The caller's trace context when it sent a traceparent; else the current one."""
    metadata = context.invocation_metadata()
    if metadata and any(key == "traceparent" for key, _ in metadata):
        return context_from_metadata(metadata)
    return None


def as_gateway_error(error: Exception, where: str) -> GatewayError:
    """What to tell a caller about an error nobody planned for; logs it."""
    if isinstance(error, GatewayError):
        return error
    if is_database_unavailable(error):
        logger.warning("database unavailable", call=where, error=repr(error))
        return Unavailable("the database is unavailable; try again shortly")
    logger.exception("unexpected error", call=where)
    return Internal("internal error")


def rpc(method: Method[Service, Request, Response]) -> Method[Service, Request, Response]:
    """Run an Ingress method in its span; abort with the right status if it raises."""
    name = f"reverb.v1.Ingress/{method.__name__}"

    @functools.wraps(method)
    async def call(service: Service, request: Request, context: CallContext) -> Response:
        with server_span(name, _parent(context)) as span:
            try:
                return await method(service, request, context)
            except Exception as raised:  # every failure becomes a status, never UNKNOWN
                error = as_gateway_error(raised, name)
            if isinstance(error, Internal | Unavailable):
                span.set_status(Status(StatusCode.ERROR, error.code))
            return await context.abort(
                error.grpc_status, error.message, ((ERROR_CODE_METADATA, error.code),)
            )

    return call
