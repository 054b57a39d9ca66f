"""The generated gRPC glue: the FunctionHost servicer and the Ingress call a host makes."""

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from grpc import aio

import reverb
from reverb.signing import Keyring, ReplayGuard
from reverb_contracts.v1 import (
    function_host_pb2,
    function_host_pb2_grpc,
    ingress_pb2,
    ingress_pb2_grpc,
)
from reverb_function_host.authentication import StartCheck
from reverb_function_host.frames import Answer
from reverb_function_host.session import Session
from reverb_function_host.wire import messages

SERVICE_NAME = function_host_pb2.DESCRIPTOR.services_by_name["FunctionHost"].full_name

# A batch is split into messages of about this size; one larger frame goes alone.
BATCH_BYTES = 1024 * 1024

# The initial metadata of an Invoke stream: the largest message the host accepts, so the
# worker fails a Start that can never fit instead of sending it (which would break the
# stream, and every other invocation on it).
RECEIVE_LIMIT_KEY = "reverb-max-receive-bytes"

Context = aio.ServicerContext[Any, Any]
Write = Callable[[function_host_pb2.InvokeResponse], Awaitable[None]]


class FunctionHostService(function_host_pb2_grpc.FunctionHostServicer):
    """Serves the functions of one app: Describe, and Invoke (one `Session` per stream)."""

    def __init__(self, app: reverb.App, max_message_bytes: int, keyring: Keyring | None) -> None:
        self._app = app
        self._keyring = keyring
        # Every Start nonce accepted within the signature window, across streams.
        self._replays = ReplayGuard()
        # The address the host registers (and Starts name), once it is bound.
        self.address = ""
        self._receive_limit = ((RECEIVE_LIMIT_KEY, str(max_message_bytes)),)
        self._closing: set[asyncio.Future[None]] = set()
        # Invoke streams open now.
        self.sessions = 0
        # The largest JSON payload a frame may carry, leaving room for the rest of it.
        self._max_frame = max_message_bytes - 1024

    async def Describe(
        self, request: function_host_pb2.DescribeRequest, context: Context
    ) -> function_host_pb2.DescribeResponse:
        return messages.describe_response(self._app)

    async def Invoke(  # type: ignore[override]
        self, request_iterator: Any, context: Context
    ) -> None:
        await context.send_initial_metadata(self._receive_limit)
        session = Session(self._app, functools.partial(_send, context.write, self._max_frame))
        session.start()
        self.sessions += 1
        peer = context.peer()
        check = StartCheck(self._app.id, self.address, self._keyring, self._replays, peer)
        try:
            async for request in aiter(request_iterator):
                if not session.receive(messages.worker_frames(request, check)):
                    break  # the worker stopped reading
        finally:
            self.sessions -= 1
            # Closed in a task of its own that this servicer holds until it ends, so a
            # second cancellation of this handler cannot interrupt it (see Session.close).
            closing = asyncio.ensure_future(session.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            await asyncio.shield(closing)

    async def closed(self) -> None:
        """Until every session that ended has closed (its invocations abandoned)."""
        if self._closing:
            await asyncio.wait(self._closing)


async def _send(write: Write, max_frame: int, frames: Sequence[Answer]) -> None:
    for response in messages.session_responses(frames, BATCH_BYTES, max_frame):
        await write(response)


def add_function_host(
    server: aio.Server, app: reverb.App, max_message_bytes: int, keyring: Keyring | None
) -> FunctionHostService:
    """Serve reverb.v1.FunctionHost for `app` on `server`; with a keyring, every Start must
    be signed with one of its keys (None: an insecure host, nothing is checked). Set the
    servicer's `address` before the server starts."""
    servicer = FunctionHostService(app, max_message_bytes, keyring)
    function_host_pb2_grpc.add_FunctionHostServicer_to_server(servicer, server)
    return servicer


async def register_app(
    channel: aio.Channel,
    app: reverb.App,
    host_address: str,
    lease: timedelta,
    instance_id: str,
    *,
    metadata: Sequence[tuple[str, str]],
    timeout: float,  # noqa: ASYNC109 (the call's gRPC deadline)
) -> tuple[bool, timedelta | None]:
    """Call Ingress.RegisterApp once; whether the app's definitions changed, and the lease
    granted (None: the gateway named none)."""
    stub = ingress_pb2_grpc.IngressStub(channel)
    request = messages.register_app_request(app, host_address, lease, instance_id)
    response = await stub.RegisterApp(request, metadata=metadata, timeout=timeout)
    granted = response.lease.ToTimedelta() if response.HasField("lease") else None
    return response.changed, granted


async def renew_lease(
    channel: aio.Channel,
    app_id: str,
    host_address: str,
    lease: timedelta,
    instance_id: str,
    *,
    metadata: Sequence[tuple[str, str]],
    timeout: float,  # noqa: ASYNC109 (the call's gRPC deadline)
) -> timedelta | None:
    """Call Ingress.RenewHostLease once; the lease granted (None: the gateway named none)."""
    stub = ingress_pb2_grpc.IngressStub(channel)
    request = ingress_pb2.RenewHostLeaseRequest(
        app_id=app_id, host_address=host_address, instance_id=instance_id
    )
    request.lease.FromTimedelta(lease)
    response = await stub.RenewHostLease(request, metadata=metadata, timeout=timeout)
    return response.lease.ToTimedelta() if response.HasField("lease") else None


async def release_lease(
    channel: aio.Channel,
    app_id: str,
    host_address: str,
    instance_id: str,
    *,
    metadata: Sequence[tuple[str, str]],
    timeout: float,  # noqa: ASYNC109 (the call's gRPC deadline)
) -> bool:
    """Call Ingress.ReleaseHostLease once; whether this instance held the lease."""
    stub = ingress_pb2_grpc.IngressStub(channel)
    request = ingress_pb2.ReleaseHostLeaseRequest(
        app_id=app_id, host_address=host_address, instance_id=instance_id
    )
    response = await stub.ReleaseHostLease(request, metadata=metadata, timeout=timeout)
    return response.released
