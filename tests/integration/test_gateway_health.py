"""A gateway told which apps it needs is healthy only once they are registered: /healthz
answers 503 (saying which apps it waits for) and gRPC health NOT_SERVING until then."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reverb_contracts.v1 import common_pb2, ingress_pb2, ingress_pb2_grpc
from reverb_ingress_gateway import Gateway, GatewaySettings, start

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[Gateway]:
    gateway = await start(
        GatewaySettings(
            database_url=database_url,
            http_address="127.0.0.1:0",
            ingress_address="127.0.0.1:0",
            dev=True,
            gateway_required_apps=("shop", "billing"),
            health_check_interval=0.05,
        )
    )
    yield gateway
    await gateway.stop()


async def register(ingress: ingress_pb2_grpc.IngressAsyncStub, app_id: str) -> None:
    function = common_pb2.FunctionDefinition(
        id=f"{app_id}-handler", triggers=[common_pb2.Trigger(event=f"{app_id}.event")]
    )
    app = common_pb2.AppDefinition(id=app_id, functions=[function])
    await ingress.RegisterApp(ingress_pb2.RegisterAppRequest(app=app, host_address="10.0.0.1:1"))


async def test_health_waits_for_the_required_apps_to_register(gateway: Gateway) -> None:
    request = health_pb2.HealthCheckRequest(service="reverb.v1.Ingress")
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http,
        grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)
        ingress: ingress_pb2_grpc.IngressAsyncStub = ingress_pb2_grpc.IngressStub(channel)
        watch = health.Watch(request)
        async with asyncio.timeout(10):
            assert (await watch.read()).status == NOT_SERVING
            assert (await health.Check(health_pb2.HealthCheckRequest())).status == NOT_SERVING
            response = await http.get("/healthz")
            assert (response.status_code, response.json()) == (
                503,
                {
                    "error": {
                        "code": "unavailable",
                        "message": "waiting for apps billing, shop to register",
                    }
                },
            )

            await register(ingress, "shop")
            response = await http.get("/healthz")
            assert response.status_code == 503
            assert response.json()["error"]["message"] == "waiting for app billing to register"

            await register(ingress, "billing")
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            assert (await watch.read()).status == SERVING
            assert (await health.Check(request)).status == SERVING
        watch.cancel()


def test_the_required_apps_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVERB_GATEWAY_REQUIRED_APPS", "shop, billing,")
    settings = GatewaySettings(database_url="postgresql://unused")
    assert settings.gateway_required_apps == ("shop", "billing")
