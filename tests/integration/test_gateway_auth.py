"""API keys and their scopes on both APIs, host keys bound to apps, and dev mode: no keys,
loopback only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

import reverb
from reverb_contracts.v1 import common_pb2, ingress_pb2, ingress_pb2_grpc
from reverb_function_host import HostSettings
from reverb_function_host import start as start_host
from reverb_ingress_gateway import Gateway, GatewaySettings, UnsafeDevMode, start
from reverb_store.control import InvalidKeyScopes, create_api_key, hash_key, revoke_api_key


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


ALL_BUT_HOST = ("ingest", "read", "operate", "admin")


@pytest.fixture
async def key(connection: asyncpg.Connection) -> str:
    return (await create_api_key(connection, "tests", ALL_BUT_HOST))[1]


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
    key_id, key = await create_api_key(connection, "tests", ["ingest", "read"])
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
    _, key = await create_api_key(connection, "cached", ["read"])
    gateway = await start(_settings(database_url, api_key_cache_seconds=60))
    try:
        assert gateway.keys is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
            headers = {"authorization": f"Bearer {key}"}
            for _ in range(5):
                assert (await client.get("/functions", headers=headers)).status_code == 200
            # Within the cache time the key is not looked up again.
            assert gateway.keys.lookups == 1
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


# Each HTTP route, with the scope its RPC declares.
HTTP_ROUTES = [
    ("POST", "/events", "ingest"),
    ("GET", "/events", "read"),
    ("GET", "/events/some-id", "read"),
    ("GET", "/runs", "read"),
    ("GET", "/runs/some-id", "read"),
    ("GET", "/functions", "read"),
]


@pytest.mark.parametrize(("method", "path", "scope"), HTTP_ROUTES)
async def test_a_route_needs_its_scope(
    client: httpx.AsyncClient,
    connection: asyncpg.Connection,
    method: str,
    path: str,
    scope: str,
) -> None:
    others = [other for other in ALL_BUT_HOST if other != scope]
    _, lacking = await create_api_key(connection, "lacking", others)
    _, host = await create_api_key(connection, "host", ["host"], ["shop"])
    _, holding = await create_api_key(connection, "holding", [scope])
    for refused in (lacking, host):
        response = await client.request(
            method, path, json={"name": "x"}, headers={"authorization": f"Bearer {refused}"}
        )
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert error["code"] == "permission_denied"
        assert repr(scope) in error["message"]
    response = await client.request(
        method, path, json={"name": "x"}, headers={"authorization": f"Bearer {holding}"}
    )
    assert response.status_code in (200, 202, 404), response.text
    # Only the key holding ingest sent an event.
    expected = 1 if scope == "ingest" else 0
    assert await connection.fetchval("SELECT count(*) FROM reverb.events") == expected


def _app(app_id: str) -> ingress_pb2.RegisterAppRequest:
    app = common_pb2.AppDefinition(id=app_id)
    app.functions.add(id=f"{app_id}-job").triggers.add(event="order.placed")
    return ingress_pb2.RegisterAppRequest(app=app, host_address="127.0.0.1:8290")


def _bearer(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)


async def test_grpc_calls_need_their_scope(
    gateway: Gateway, connection: asyncpg.Connection
) -> None:
    _, ingest = await create_api_key(connection, "ingest", ["ingest"])
    _, reader = await create_api_key(connection, "read", ["read"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        ingress: ingress_pb2_grpc.IngressAsyncStub = ingress_pb2_grpc.IngressStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await ingress.ListRuns(ingress_pb2.ListRunsRequest(), metadata=_bearer(ingest))
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        trailing = dict(raised.value.trailing_metadata() or ())
        assert trailing["reverb-error-code"] == "permission_denied"
        await ingress.ListRuns(ingress_pb2.ListRunsRequest(), metadata=_bearer(reader))
        send = ingress_pb2.SendEventsRequest()
        send.events.add(name="x")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await ingress.SendEvents(send, metadata=_bearer(reader))
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await ingress.SendEvents(send, metadata=_bearer(ingest))


async def test_only_a_host_key_bound_to_the_app_registers_it(
    gateway: Gateway, connection: asyncpg.Connection, key: str
) -> None:
    _, shop_host = await create_api_key(connection, "shop-host", ["host"], ["shop"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        ingress: ingress_pb2_grpc.IngressAsyncStub = ingress_pb2_grpc.IngressStub(channel)
        # Not another app, and not with any other key (`key` holds every scope but host).
        for request, refused in ((_app("billing"), shop_host), (_app("shop"), key)):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await ingress.RegisterApp(request, metadata=_bearer(refused))
            assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED, raised.value
        assert await connection.fetchval("SELECT count(*) FROM reverb.apps") == 0
        # A host key does nothing else.
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await ingress.ListFunctions(
                ingress_pb2.ListFunctionsRequest(), metadata=_bearer(shop_host)
            )
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        response = await ingress.RegisterApp(_app("shop"), metadata=_bearer(shop_host))
        assert response.changed is True
    assert await connection.fetchval("SELECT id FROM reverb.apps") == "shop"


async def test_only_a_host_key_bound_to_the_app_renews_or_releases_its_leases(
    gateway: Gateway, connection: asyncpg.Connection, key: str
) -> None:
    _, shop_host = await create_api_key(connection, "shop-host", ["host"], ["shop"])
    _, billing_host = await create_api_key(connection, "billing-host", ["host"], ["billing"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        ingress: ingress_pb2_grpc.IngressAsyncStub = ingress_pb2_grpc.IngressStub(channel)
        await ingress.RegisterApp(_app("shop"), metadata=_bearer(shop_host))
        renew = ingress_pb2.RenewHostLeaseRequest(app_id="shop", host_address="127.0.0.1:8290")
        release = ingress_pb2.ReleaseHostLeaseRequest(app_id="shop", host_address="127.0.0.1:8290")
        for refused in (billing_host, key):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await ingress.RenewHostLease(renew, metadata=_bearer(refused))
            assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED, raised.value
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await ingress.ReleaseHostLease(release, metadata=_bearer(refused))
            assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED, raised.value
        assert await connection.fetchval("SELECT count(*) FROM reverb.app_hosts") == 1
        await ingress.RenewHostLease(renew, metadata=_bearer(shop_host))
        await ingress.ReleaseHostLease(release, metadata=_bearer(shop_host))
    assert await connection.fetchval("SELECT count(*) FROM reverb.app_hosts") == 0


async def test_a_function_host_registers_with_its_host_key(
    gateway: Gateway, connection: asyncpg.Connection
) -> None:
    _, host_key = await create_api_key(connection, "shop-host", ["host"], ["shop"])
    app = reverb.App("shop")

    @app.function("greet", trigger=reverb.event("user.signed_up"))
    async def greet(ctx: reverb.Context) -> str:
        return "hi"

    host = await start_host(
        app,
        HostSettings(
            host_address="127.0.0.1:0",
            ingress_address=f"127.0.0.1:{gateway.grpc_port}",
            api_key=SecretStr(host_key),
            signing_key=SecretStr("signing key"),
        ),
    )
    try:
        await asyncio.wait_for(host.registered.wait(), 20)
    finally:
        await host.stop(0)
    assert await connection.fetchval("SELECT app_id FROM reverb.functions") == "shop"


@pytest.mark.parametrize(
    ("scopes", "apps", "message"),
    [
        (["host"], [], "at least one app"),
        (["host", "read"], ["shop"], "host scope alone"),
        (["read"], ["shop"], "only a host key"),
        (["root"], [], "unknown scope"),
    ],
)
async def test_keys_hold_only_scopes_that_fit(
    connection: asyncpg.Connection, scopes: list[str], apps: list[str], message: str
) -> None:
    with pytest.raises(InvalidKeyScopes, match=message):
        await create_api_key(connection, "bad", scopes, apps)
    # The table refuses them too.
    with pytest.raises(asyncpg.CheckViolationError):
        await connection.execute(
            "INSERT INTO reverb.api_keys (id, name, key_hash, scopes, apps)"
            " VALUES ('k', 'bad', 'h', $1, $2)",
            scopes,
            apps,
        )


async def test_a_new_key_holds_ingest_unless_told(connection: asyncpg.Connection) -> None:
    key_id, _ = await create_api_key(connection, "default")
    row = await connection.fetchrow(
        "SELECT scopes, apps FROM reverb.api_keys WHERE id = $1", key_id
    )
    assert row is not None
    assert (row["scopes"], row["apps"]) == (["ingest"], [])
