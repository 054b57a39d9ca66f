"""Requests that are not valid protobuf: INVALID_ARGUMENT with a plain message.

gRPC parses a request before the handler runs; a parse failure would end the call
as UNKNOWN with the parser's Python exception class in its details. This
interceptor makes each method's parser hand a marker to the handler's wrapper
instead, which aborts the call with INVALID_ARGUMENT.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context: TypeAlias = "aio.ServicerContext[Any, Any]"


class _Malformed:
    """What the lenient parser returns for bytes that are not the request message."""


_MALFORMED = _Malformed()


class MalformedRequestInterceptor(aio.ServerInterceptor):
    """Answers a request that cannot be parsed with INVALID_ARGUMENT."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return _lenient(handler, handler_call_details.method)


def _lenient(handler: Any, method: str) -> Handler:
    parse: Callable[[bytes], object] = handler.request_deserializer
    problem = f"the request to {method} is not a valid protobuf message"

    def lenient_parse(data: bytes) -> object:
        try:
            return parse(data)
        except (DecodeError, ValueError, TypeError):
            return _MALFORMED

    replaced: dict[str, Any] = {"request_deserializer": lenient_parse}
    if handler.request_streaming:
        name = "stream_stream" if handler.response_streaming else "stream_unary"
        replaced[name] = _checking_stream(getattr(handler, name), problem)
    else:
        name = "unary_stream" if handler.response_streaming else "unary_unary"
        replaced[name] = _checking_unary(getattr(handler, name), problem)
    result: Handler = handler._replace(**replaced)
    return result


async def _refuse(context: Context, problem: str) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)


def _checking_unary(behavior: Callable[..., Any], problem: str) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def stream_out(request: object, context: Context) -> AsyncIterator[object]:
            if request is _MALFORMED:
                await _refuse(context, problem)
            async for response in behavior(request, context):
                yield response

        return stream_out

    async def unary(request: object, context: Context) -> object:
        if request is _MALFORMED:
            await _refuse(context, problem)
        return await behavior(request, context)

    return unary


def _checking_stream(behavior: Callable[..., Any], problem: str) -> Callable[..., Any]:
    def checked(requests: Any, context: Context) -> AsyncIterator[object]:
        async def each() -> AsyncIterator[object]:
            async for request in aiter(requests):
                if request is _MALFORMED:
                    await _refuse(context, problem)
                yield request

        return each()

    if inspect.isasyncgenfunction(behavior):

        async def stream_out(requests: Any, context: Context) -> AsyncIterator[object]:
            async for response in behavior(checked(requests, context), context):
                yield response

        return stream_out

    async def unary(requests: Any, context: Context) -> object:
        return await behavior(checked(requests, context), context)

    return unary
