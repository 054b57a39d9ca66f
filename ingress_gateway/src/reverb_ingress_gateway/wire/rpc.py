"""reverb.v1.Ingress on a grpc.aio server: the servicer's methods, spans, statuses, API keys.

A call needs a live key holding the scope its RPC declares (`(reverb.v1.scope)`,
read by `options.scope`); the key's grant is `auth.CALLER` while the call runs.

Each RPC of the service runs its `IngressServicer` method in a span (under the
caller's traceparent when it sent one); a GatewayError (or anything else, made
one by `as_gateway_error`) aborts the call with its row of `errors.STATUSES`:
the gRPC status, and the error's code in the `reverb-error-code` trailing
metadata.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode

from reverb_contracts.v1 import ingress_pb2
from reverb_ingress_gateway.auth import CALLER, ApiKeys
from reverb_ingress_gateway.errors import Internal, Unauthenticated, Unavailable, as_gateway_error
from reverb_ingress_gateway.servicer import IngressService
from reverb_ingress_gateway.spans import server_span
from reverb_ingress_gateway.wire.ingress import IngressServicer
from reverb_ingress_gateway.wire.options import scope
from reverb_store.control import ApiKeyGrant
from reverb_telemetry import context_from_metadata

ERROR_CODE_METADATA = "reverb-error-code"
INGRESS = ingress_pb2.DESCRIPTOR.services_by_name["Ingress"]
INGRESS_SERVICE = INGRESS.full_name

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def _parent(metadata: grpc.aio.Metadata | None) -> Context | None:
    """The caller's trace context when it sent a traceparent; else the current one."""
    if metadata and any(key == "traceparent" for key, _ in metadata):
        return context_from_metadata(metadata)
    return None


def _handler(
    name: str, method: Callable[[Any], Awaitable[Message]], request_type: type[Message]
) -> Handler:
    async def call(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
        with server_span(name, _parent(context.invocation_metadata())) as span:
            try:
                return await method(request)
            except Exception as raised:  # every failure becomes a status, never UNKNOWN
                error = as_gateway_error(raised, name)
            if isinstance(error, Internal | Unavailable):
                span.set_status(Status(StatusCode.ERROR, error.code))
            status = error.status
            return await context.abort(
                grpc.StatusCode[status.grpc], error.message, ((ERROR_CODE_METADATA, status.code),)
            )

    return grpc.unary_unary_rpc_method_handler(
        call,
        request_deserializer=request_type.FromString,
        response_serializer=lambda response: response.SerializeToString(),
    )


def add_ingress(server: grpc.aio.Server, service: IngressService) -> None:
    """Serve every Ingress RPC on `server` with the servicer's method of the same name."""
    servicer = IngressServicer(service)
    handlers = {
        method.name: _handler(
            f"{INGRESS_SERVICE}/{method.name}",
            getattr(servicer, method.name),
            GetMessageClass(method.input_type),
        )
        for method in INGRESS.methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(INGRESS_SERVICE, handlers),)
    )
    server.add_registered_method_handlers(INGRESS_SERVICE, handlers)


def _denial(status: grpc.StatusCode, code: str, message: str) -> Handler:
    async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(status, message, ((ERROR_CODE_METADATA, code),))

    return grpc.unary_unary_rpc_method_handler(deny)


def _as_caller(handler: Handler, grant: ApiKeyGrant) -> Handler:
    """`handler` (unary-unary, as every Ingress RPC is) with `grant` as auth.CALLER."""
    # grpc.aio calls the behavior with its own context and awaits it (the stubs type it sync).
    behavior: Any = handler.unary_unary
    assert behavior is not None

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        token = CALLER.set(grant)
        try:
            return await behavior(request, context)
        finally:
            CALLER.reset(token)

    return grpc.unary_unary_rpc_method_handler(
        call,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Refuses reverb.v1.Ingress calls without a live key holding the RPC's scope (before the
    request is read); health and reflection stay open."""

    _PROTECTED_PREFIX = f"/{INGRESS_SERVICE}/"

    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys
        self._scopes = {
            f"/{INGRESS_SERVICE}/{method.name}": scope(method) for method in INGRESS.methods
        }

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method = handler_call_details.method
        if not method.startswith(self._PROTECTED_PREFIX):
            return await continuation(handler_call_details)
        authorization = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                authorization = value if isinstance(value, str) else value.decode()
        needed = self._scopes.get(method)
        try:
            if needed is None:  # no such RPC: still no answer without a live key
                if await self._keys.grant(authorization) is None:
                    raise Unauthenticated(
                        "missing or invalid API key: send `authorization: Bearer <key>`"
                    )
                return await continuation(handler_call_details)
            grant = await self._keys.authorize(authorization, needed, method.lstrip("/"))
        except Exception as raised:
            error = as_gateway_error(raised, "authentication")
            return _denial(grpc.StatusCode[error.status.grpc], error.code, error.message)
        handler = await continuation(handler_call_details)
        return None if handler is None else _as_caller(handler, grant)
