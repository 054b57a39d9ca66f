"""API keys on both APIs, and dev mode: no keys, loopback only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reverb_contracts.v1 import ingress_pb2, ingress_pb2_grpc
from reverb_ingress_gateway import Gateway, GatewaySettings, UnsafeDevMode, start
from reverb_store.control import create_api_key, hash_key, revoke_api_key


def _settings(database_url: str, **overrides: object) -> GatewaySettings:
    values: dict[str, object] = {
        "database_url": database_url,
        "http_address": "127.0.0.1:0",
        "ingress_address": "127.0.0.1:0",
        **overrides,
    }
    return GatewaySettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[Gateway]:
    gateway = await start(_settings(database_url, api_key_cache_seconds=0))
    yield gateway
    await gateway.stop()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield client


@pytest.fixture
async def key(connection: asyncpg.Connection) -> str:
    return (await create_api_key(connection, "tests"))[1]


async def test_keys_are_shown_once_and_stored_hashed(connection: asyncpg.Connection) -> None:
    key_id, key = await create_api_key(connection, "ci")
    assert key.startswith("rvb_") and len(key) > 40
    stored = await connection.fetchrow(
        "SELECT name, key_hash FROM reverb.api_keys WHERE id = $1", key_id
    )
    assert stored is not None
    assert (stored["name"], stored["key_hash"]) == ("ci", hash_key(key))
    assert key not in stored["key_hash"]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer rvb_wrong", "Basic dXNlcjpwYXNz", "rvb_not_bearer"],
)
async def test_requests_without_a_live_key_are_401(
    client: httpx.AsyncClient, connection: asyncpg.Connection, authorization: str | None
) -> None:
    headers = {"authorization": authorization} if authorization is not None else {}
    for method, path in (
        ("POST", "/events"),
        ("GET", "/runs"),
        ("GET", "/runs/x"),
        ("GET", "/functions"),
    ):
        response = await client.request(method, path, json={"name": "x"}, headers=headers)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "unauthenticated"
    assert await connection.fetchval("SELECT count(*) FROM reverb.events") == 0


async def test_a_live_key_opens_the_api_until_it_is_revoked(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    key_id, key = await create_api_key(connection, "tests")
    headers = {"authorization": f"Bearer {key}"}
    assert (await client.post("/events", json={"name": "x"}, headers=headers)).status_code == 202
    assert (
        await client.get("/runs", headers={"authorization": f"bearer {key}"})
    ).status_code == 200
    assert await revoke_api_key(connection, key_id) is True
    assert (await client.get("/runs", headers=headers)).status_code == 401


async def test_health_and_openapi_need_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/openapi.json")).status_code == 200


async def test_a_verified_key_is_trusted_for_a_while(
    database_url: str, connection: asyncpg.Connection
) -> None:
    key_id, key = await create_api_key(connection, "cached")
    gateway = await start(_settings(database_url, api_key_cache_seconds=60))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
            headers = {"authorization": f"Bearer {key}"}
            assert (await client.get("/functions", headers=headers)).status_code == 200
            await revoke_api_key(connection, key_id)
            # Within the cache time the key is not looked up again.
            assert (await client.get("/functions", headers=headers)).status_code == 200
    finally:
        await gateway.stop()


async def test_grpc_calls_need_a_key_but_health_does_not(
    gateway: Gateway, key: str, connection: asyncpg.Connection
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        ingress: ingress_pb2_grpc.IngressAsyncStub = ingress_pb2_grpc.IngressStub(channel)
        request = ingress_pb2.ListFunctionsRequest()
        for metadata in ((), (("authorization", "Bearer rvb_wrong"),)):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await ingress.ListFunctions(request, metadata=metadata)
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        await ingress.ListFunctions(request, metadata=(("authorization", f"Bearer {key}"),))
        health = health_pb2_grpc.HealthStub(channel)
        response = await health.Check(health_pb2.HealthCheckRequest(service="reverb.v1.Ingress"))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_dev_mode_needs_no_key(database_url: str) -> None:
    gateway = await start(_settings(database_url, dev=True))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
            assert (await client.post("/events", json={"name": "dev"})).status_code == 202
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
            ingress: ingress_pb2_grpc.IngressAsyncStub = ingress_pb2_grpc.IngressStub(channel)
            await ingress.ListFunctions(ingress_pb2.ListFunctionsRequest())
    finally:
        await gateway.stop()


@pytest.mark.parametrize(
    "addresses",
    [
        {"http_address": "0.0.0.0:0"},
        {"ingress_address": "0.0.0.0:0"},
        {"http_address": "[::]:0"},
        {"ingress_address": "example.com:8289"},
    ],
)
async def test_dev_mode_refuses_addresses_beyond_loopback(
    database_url: str, addresses: dict[str, str]
) -> None:
    with pytest.raises(UnsafeDevMode):
        await start(_settings(database_url, dev=True, **addresses))


async def test_dev_mode_accepts_loopback_names(database_url: str) -> None:
    gateway = await start(
        _settings(database_url, dev=True, http_address="localhost:0", ingress_address="[::1]:0")
    )
    await gateway.stop()
