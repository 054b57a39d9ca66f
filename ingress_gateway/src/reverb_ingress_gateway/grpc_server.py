"""The gRPC server: reverb.v1.Ingress, health and reflection on one port."""

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from reverb_ingress_gateway.auth import ApiKeys
from reverb_ingress_gateway.servicer import IngressService
from reverb_ingress_gateway.wire.rpc import INGRESS_SERVICE, ApiKeyInterceptor, add_ingress


class GrpcServer:
    def __init__(self, server: grpc.aio.Server, health: health.aio.HealthServicer, port: int):
        self.server = server
        self.health = health
        self.port = port

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_grpc_server(
    service: IngressService, keys: ApiKeys | None, *, address: str, max_message_bytes: int
) -> GrpcServer:
    """Bind `address` (port 0: any free port) and start serving; `keys` None: no auth."""
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
    port = server.add_insecure_port(address)
    await server.start()
    for name in ("", INGRESS_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return GrpcServer(server, health_servicer, port)
