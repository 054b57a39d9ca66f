"""Dev mode refuses what a web page can send: foreign Host names (DNS rebinding), foreign
origins and bodies that are not JSON; production refuses foreign origins unless listed."""

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from reverb_ingress_gateway import Gateway, GatewaySettings, start
from tests.integration.listeners import listen

EVENT = b'{"name": "paid", "data": {"amount": 999999}}'


def _settings(database_url: str, **overrides: object) -> GatewaySettings:
    return GatewaySettings(
        database_url=database_url,
        http_address="127.0.0.1:0",
        ingress_address="127.0.0.1:0",
        log_json=False,
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[Gateway]:
    gateway = await start(_settings(database_url, dev=True))
    yield gateway
    await gateway.stop()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield client


@pytest.fixture(autouse=True)
async def listening(connection: asyncpg.Connection) -> None:
    await listen(connection, "paid")


async def _nothing_started(connection: asyncpg.Connection) -> None:
    assert await connection.fetchval("SELECT count(*) FROM reverb.events") == 0
    assert await connection.fetchval("SELECT count(*) FROM pgqueuer") == 0


def _code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


async def test_a_no_cors_post_from_a_foreign_host_starts_no_run(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    """The review's reproduction: no Content-Type, a foreign Host and Origin."""
    response = await client.post(
        "/events",
        content=EVENT,
        headers={"host": "attacker.example", "origin": "http://attacker.example"},
    )
    assert response.status_code == 421
    assert _code(response) == "foreign_host"
    await _nothing_started(connection)


async def test_a_no_cors_post_from_a_foreign_page_starts_no_run(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    """A page on another site posting to localhost: the Host is loopback, the Origin is not."""
    response = await client.post(
        "/events",
        content=EVENT,
        headers={"origin": "https://attacker.example", "content-type": "text/plain"},
    )
    assert response.status_code == 403
    assert _code(response) == "cross_site"
    await _nothing_started(connection)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_must_be_declared_json(
    client: httpx.AsyncClient, connection: asyncpg.Connection, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = await client.post("/events", content=EVENT, headers=headers)
    assert response.status_code == 415
    assert _code(response) == "unsupported_media_type"
    await _nothing_started(connection)


async def test_a_json_body_is_accepted(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    response = await client.post(
        "/events", content=EVENT, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 202
    assert await connection.fetchval("SELECT count(*) FROM reverb.events") == 1


@pytest.mark.parametrize("path", ["/events", "/runs", "/functions", "/healthz"])
async def test_reads_with_a_foreign_host_are_refused_in_dev(
    client: httpx.AsyncClient, path: str
) -> None:
    """DNS rebinding: a page whose name now points at 127.0.0.1 sends its own name as Host."""
    response = await client.get(path, headers={"host": "rebound.attacker.example:8288"})
    assert response.status_code == 421
    assert _code(response) == "foreign_host"


@pytest.mark.parametrize("host", ["localhost:8288", "127.0.0.1", "[::1]:8288", "LOCALHOST"])
async def test_loopback_hosts_are_served_in_dev(client: httpx.AsyncClient, host: str) -> None:
    response = await client.get("/functions", headers={"host": host})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "origin", ["http://localhost:3000", "http://127.0.0.1:5173", "http://[::1]"]
)
async def test_loopback_origins_are_allowed_in_dev(client: httpx.AsyncClient, origin: str) -> None:
    response = await client.get("/functions", headers={"origin": origin})
    assert response.status_code == 200


@pytest.mark.parametrize("origin", ["null", "http://localhost.attacker.example", "file://"])
async def test_other_origins_are_refused_in_dev(client: httpx.AsyncClient, origin: str) -> None:
    response = await client.get("/functions", headers={"origin": origin})
    assert response.status_code == 403
    assert _code(response) == "cross_site"


@pytest.fixture
async def production(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    gateway = await start(
        _settings(database_url, http_allowed_origins="https://console.example.com")
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield client
    await gateway.stop()


async def test_production_serves_any_host_name(production: httpx.AsyncClient) -> None:
    """Behind a load balancer the Host is the public name; API keys guard the data."""
    response = await production.get("/healthz", headers={"host": "api.example.com"})
    assert response.status_code == 200


async def test_production_allows_its_own_origin(production: httpx.AsyncClient) -> None:
    response = await production.get(
        "/healthz", headers={"host": "api.example.com", "origin": "https://api.example.com"}
    )
    assert response.status_code == 200


async def test_production_refuses_unlisted_origins(production: httpx.AsyncClient) -> None:
    response = await production.get("/healthz", headers={"origin": "http://localhost:3000"})
    assert response.status_code == 403
    assert _code(response) == "cross_site"


async def test_production_serves_listed_origins_with_cors(production: httpx.AsyncClient) -> None:
    origin = {"origin": "https://console.example.com"}
    response = await production.get("/healthz", headers=origin)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://console.example.com"
    preflight = await production.options(
        "/events",
        headers={
            **origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()


async def test_too_many_query_parameters_are_refused(client: httpx.AsyncClient) -> None:
    query = "&".join(f"p{number}=1" for number in range(65))
    response = await client.get(f"/runs?{query}")
    assert response.status_code == 400
    assert _code(response) == "too_many_parameters"


async def test_a_long_query_string_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/runs?function={'f' * 9000}")
    assert response.status_code == 414
    assert _code(response) == "uri_too_long"


async def test_64_query_parameters_are_served(client: httpx.AsyncClient) -> None:
    query = "&".join(f"p{number}=1" for number in range(63))
    response = await client.get(f"/runs?status=queued&{query}")
    assert response.status_code == 200
