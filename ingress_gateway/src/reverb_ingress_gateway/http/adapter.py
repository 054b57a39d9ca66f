"""Calling the Ingress servicer in-process, as the HTTP API does.

The servicer answers HTTP and gRPC callers alike; here, an abort becomes the
GatewayError it stands for (its status and its `reverb-error-code`), which the
HTTP layer renders.
"""

from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import grpc

from reverb_ingress_gateway.calls import CallContext, Metadata
from reverb_ingress_gateway.errors import ERROR_CODE_METADATA, error_from_status

Request = TypeVar("Request")
Response = TypeVar("Response")


class HttpCallContext:
    """The CallContext of an in-process call: no metadata, aborts raise."""

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()
    ) -> NoReturn:
        error_code = None
        for key, value in trailing_metadata:
            if key == ERROR_CODE_METADATA:
                error_code = value if isinstance(value, str) else value.decode()
        raise error_from_status(code, details, error_code)

    def invocation_metadata(self) -> grpc.aio.Metadata | None:
        return None


_CONTEXT: CallContext = HttpCallContext()


async def call(
    method: Callable[[Request, CallContext], Awaitable[Response]], request: Request
) -> Response:
    """Call a (bound) servicer method; its failure raises the matching GatewayError."""
    return await method(request, _CONTEXT)
