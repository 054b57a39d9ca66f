"""PostgreSQL going away: every API answers 503 / UNAVAILABLE (never 500), gRPC health says
NOT_SERVING, and both recover.

The gateway reaches PostgreSQL through a TCP proxy the test controls, so the
database can be made unreachable (connections cut, port refusing) and brought
back, for real.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reverb_contracts.v1 import function_host_pb2, ingress_pb2, ingress_pb2_grpc
from reverb_ingress_gateway import Gateway, GatewaySettings, start


class TcpProxy:
    """Forwards a local port to PostgreSQL; `cut()` drops every connection and the port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, upstream_writer}
        pumps = [
            asyncio.create_task(self._pump(reader, upstream_writer)),
            asyncio.create_task(self._pump(upstream_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for writer_ in (writer, upstream_writer):
            writer_.close()
            self._writers.discard(writer_)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.open()
    yield proxy
    await proxy.cut()


@pytest.fixture
async def gateway(database_url: str, proxy: TcpProxy) -> AsyncIterator[Gateway]:
    parts = urlsplit(database_url)
    through_proxy = urlunsplit(
        parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}")
    )
    gateway = await start(
        GatewaySettings(
            database_url=through_proxy,
            http_address="127.0.0.1:0",
            ingress_address="127.0.0.1:0",
            dev=True,
            database_timeout=2.0,
            health_check_interval=0.05,
        )
    )
    yield gateway
    await gateway.stop()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield client


async def test_an_unreachable_database_is_503_everywhere_then_recovers(
    gateway: Gateway,
    client: httpx.AsyncClient,
    proxy: TcpProxy,
    connection: asyncpg.Connection,
) -> None:
    assert (await client.post("/events", json={"name": "before"})).status_code == 202
    await proxy.cut()
    for method, path in (
        ("POST", "/events"),
        ("GET", "/events"),
        ("GET", "/runs"),
        ("GET", "/runs/some-run"),
        ("GET", "/functions"),
        ("GET", "/healthz"),
    ):
        response = await client.request(method, path, json={"name": "during"})
        assert response.status_code == 503, (path, response.text)
        assert response.json()["error"]["code"] == "unavailable"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        ingress: ingress_pb2_grpc.IngressAsyncStub = ingress_pb2_grpc.IngressStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await ingress.SendEvents(
                ingress_pb2.SendEventsRequest(events=[function_host_pb2.EventInput(name="x")])
            )
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    names = await connection.fetch("SELECT name FROM reverb.events")
    assert [row["name"] for row in names] == ["before"]

    await proxy.open()
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.post("/events", json={"name": "after"})).status_code == 202


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_grpc_health_is_not_serving_while_the_database_is_unreachable(
    gateway: Gateway, proxy: TcpProxy
) -> None:
    request = health_pb2.HealthCheckRequest(service="reverb.v1.Ingress")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert (await health.Check(request)).status == SERVING
        watch = health.Watch(request)
        async with asyncio.timeout(10):
            assert (await watch.read()).status == SERVING

            await proxy.cut()
            assert (await watch.read()).status == NOT_SERVING
            for service in ("", "reverb.v1.Ingress"):
                answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert answer.status == NOT_SERVING

            await proxy.open()
            assert (await watch.read()).status == SERVING
            assert (await health.Check(request)).status == SERVING
        watch.cancel()


async def test_terminated_connections_are_503_or_retried_never_500(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    assert (await client.post("/events", json={"name": "warm"})).status_code == 202
    database = await connection.fetchval("SELECT current_database()")
    await connection.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    statuses = [
        (await client.post("/events", json={"name": f"after-{index}"})).status_code
        for index in range(6)
    ]
    assert set(statuses) <= {202, 503}, statuses
    assert statuses[-1] == 202
    accepted = sum(status == 202 for status in statuses)
    stored = await connection.fetchval(
        "SELECT count(*) FROM reverb.events WHERE name LIKE 'after-%'"
    )
    assert stored == accepted


async def test_a_database_that_is_down_at_start_is_503_not_a_crash(
    database_url: str, proxy: TcpProxy
) -> None:
    await proxy.cut()
    parts = urlsplit(database_url)
    gateway = await start(
        GatewaySettings(
            database_url=urlunsplit(parts._replace(netloc=f"postgres@127.0.0.1:{proxy.port}")),
            http_address="127.0.0.1:0",
            ingress_address="127.0.0.1:0",
            dev=True,
            database_timeout=1.0,
        )
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
            response = await client.post("/events", json={"name": "x"})
            assert response.status_code == 503
            assert (await client.get("/healthz")).status_code == 503
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest()
            )
            assert answer.status == NOT_SERVING
    finally:
        await gateway.stop()


async def test_an_unexpected_failure_is_500_without_details(
    gateway: Gateway, client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    # Not a client mistake and not an outage: a schema the gateway does not expect.
    await connection.execute("ALTER TABLE reverb.runs RENAME COLUMN app_id TO application")
    response = await client.get("/runs")
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal", "message": "internal error"}}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        ingress: ingress_pb2_grpc.IngressAsyncStub = ingress_pb2_grpc.IngressStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await ingress.ListRuns(ingress_pb2.ListRunsRequest())
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert raised.value.details() == "internal error"
