"""The gRPC server: reverb.v1.Ingress, health and reflection on one port.

Health reports SERVING for "" and reverb.v1.Ingress while `Health` finds the gateway
healthy, NOT_SERVING otherwise (checked at start, then every `health_check_interval`
seconds), and NOT_SERVING for good once the server stops.
"""

import asyncio
import contextlib

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from reverb_ingress_gateway.auth import ApiKeys
from reverb_ingress_gateway.health import Health
from reverb_ingress_gateway.servicer import IngressService
from reverb_ingress_gateway.wire.rpc import INGRESS_SERVICE, ApiKeyInterceptor, add_ingress

_HEALTH_SERVICES = ("", INGRESS_SERVICE)


class GrpcServer:
    def __init__(
        self,
        server: grpc.aio.Server,
        health: health.aio.HealthServicer,
        reporter: "asyncio.Task[None]",
        port: int,
    ) -> None:
        self.server = server
        self.health = health
        self.port = port
        self._reporter = reporter

    async def stop(self, grace: float) -> None:
        self._reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reporter
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def _report_health(
    checks: Health, servicer: health.aio.HealthServicer, interval: float
) -> None:
    while True:
        await asyncio.sleep(interval)
        await _set_health(checks, servicer)


async def _set_health(checks: Health, servicer: health.aio.HealthServicer) -> None:
    status = health_pb2.HealthCheckResponse.SERVING
    if await checks.check() is not None:
        status = health_pb2.HealthCheckResponse.NOT_SERVING
    for name in _HEALTH_SERVICES:
        await servicer.set(name, status)


async def start_grpc_server(
    service: IngressService,
    keys: ApiKeys | None,
    checks: Health,
    *,
    address: str,
    max_message_bytes: int,
    health_check_interval: float,
    credentials: grpc.ServerCredentials | None = None,
) -> GrpcServer:
    """Bind `address` (port 0: any free port) and start serving, over TLS with
    `credentials`; `keys` None: no auth.

    Health reports what `checks` found before the server takes its first call."""
    server = grpc.aio.server(
        interceptors=[ApiKeyInterceptor(keys)] if keys is not None else [],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            # Fail to bind a port another process holds, instead of sharing it.
            ("grpc.so_reuseport", 0),
        ],
    )
    add_ingress(server, service)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (INGRESS_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    await _set_health(checks, health_servicer)
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    await server.start()
    reporter = asyncio.create_task(
        _report_health(checks, health_servicer, health_check_interval),
        name="reverb-gateway-health",
    )
    return GrpcServer(server, health_servicer, reporter, port)
