"""reverb.v1.FunctionHost: Describe, and Session (many SDK executions over one stream)."""

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

import reverb
from reverb_contracts.v1 import function_host_pb2, function_host_pb2_grpc
from reverb_function_host import wire
from reverb_function_host.session import Session

Context = aio.ServicerContext[Any, Any]


class FunctionHostService(function_host_pb2_grpc.FunctionHostServicer):
    """Serves the functions of one app."""

    def __init__(self, app: reverb.App, max_message_bytes: int) -> None:
        self._app = app
        self._max_message_bytes = max_message_bytes

    async def Describe(
        self, request: function_host_pb2.DescribeRequest, context: Context
    ) -> function_host_pb2.DescribeResponse:
        return wire.describe_response(self._app)

    async def Invoke(  # type: ignore[override]
        self, request_iterator: Any, context: Context
    ) -> None:
        requests: AsyncIterator[function_host_pb2.InvokeRequest] = aiter(request_iterator)
        session = Session(self._app, context.write, self._max_message_bytes)
        await session.serve(requests)
