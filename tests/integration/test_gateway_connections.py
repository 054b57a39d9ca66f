"""Slow and greedy clients over real sockets: stalled heads and bodies, idle connections,
too many connections, huge heads and queries. Timeouts are short here; each test awaits the
server closing the connection."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

from reverb_ingress_gateway import Gateway, GatewaySettings, start

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def overrides(request: pytest.FixtureRequest) -> dict[str, object]:
    """Settings a test changes, with `parametrize("overrides", [{…}], indirect=True)`."""
    return getattr(request, "param", {})


@pytest.fixture
async def gateway(database_url: str, overrides: dict[str, object]) -> AsyncIterator[Gateway]:
    settings: dict[str, object] = {
        "http_header_timeout": 0.5,
        "http_body_timeout": 0.5,
        "http_idle_timeout": 0.5,
        **overrides,
    }
    gateway = await start(
        GatewaySettings(
            database_url=database_url,
            http_address="127.0.0.1:0",
            ingress_address="127.0.0.1:0",
            dev=True,
            log_json=False,
            **settings,  # type: ignore[arg-type]
        )
    )
    yield gateway
    await gateway.stop()


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def connect(gateway: Gateway) -> AsyncIterator[object]:
    opened: list[asyncio.StreamWriter] = []

    async def open_one() -> Stream:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.http_port)
        opened.append(writer)
        return reader, writer

    yield open_one
    for writer in opened:
        writer.close()


def _head(method: str, target: str, *extra: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *extra, "", ""]
    return "\r\n".join(lines).encode()


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response (with a content-length) off the stream."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {}
    for line in filter(None, lines):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


def _code(body: bytes) -> str:
    return str(orjson.loads(body)["error"]["code"])


async def test_a_stalled_head_is_answered_408_and_closed(connect: object) -> None:
    reader, writer = await connect()  # type: ignore[operator]
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    status, headers, body = await _response(reader)
    assert (status, _code(body), headers["connection"]) == (408, "request_timeout", "close")
    assert await reader.read() == b""


async def test_a_connection_that_sends_nothing_is_closed(connect: object) -> None:
    reader, _ = await connect()  # type: ignore[operator]
    status, _, body = await _response(reader)
    assert (status, _code(body)) == (408, "request_timeout")
    assert await reader.read() == b""


async def test_a_head_sent_byte_by_byte_is_cut_off(connect: object) -> None:
    """Slowloris: every byte resets no timer; the head has to be whole in time."""
    reader, writer = await connect()  # type: ignore[operator]
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    closed = asyncio.ensure_future(reader.read())
    while not closed.done():
        writer.write(b"X-A: b\r\n")
        await asyncio.wait({closed}, timeout=0.05)
    assert closed.result().startswith(b"HTTP/1.1 408 ")


async def test_a_stalled_body_is_answered_408_and_starts_nothing(
    connect: object, connection: asyncpg.Connection
) -> None:
    reader, writer = await connect()  # type: ignore[operator]
    body = b'{"name": "paid", "data": {}}'
    writer.write(
        _head("POST", "/events", "Content-Type: application/json", f"Content-Length: {len(body)}")
        + body[:10]
    )
    status, headers, answer = await _response(reader)
    assert (status, _code(answer), headers["connection"]) == (408, "request_timeout", "close")
    assert await reader.read() == b""
    assert await connection.fetchval("SELECT count(*) FROM reverb.events") == 0


async def test_an_idle_keep_alive_connection_is_closed(connect: object) -> None:
    reader, writer = await connect()  # type: ignore[operator]
    writer.write(_head("GET", "/healthz"))
    status, headers, _ = await _response(reader)
    assert status == 200
    assert "connection" not in headers  # kept alive…
    assert await reader.read() == b""  # …until the idle timeout


async def test_a_kept_alive_connection_serves_the_next_request(connect: object) -> None:
    reader, writer = await connect()  # type: ignore[operator]
    for _ in range(3):
        writer.write(_head("GET", "/healthz"))
        status, _, _ = await _response(reader)
        assert status == 200


@pytest.mark.parametrize(
    "overrides",
    [{"http_max_connections": 2, "http_header_timeout": 10.0, "http_idle_timeout": 10.0}],
    indirect=True,
)
async def test_connections_beyond_the_limit_are_refused(connect: object) -> None:
    for _ in range(2):
        reader, writer = await connect()  # type: ignore[operator]
        writer.write(_head("GET", "/healthz"))
        status, _, _ = await _response(reader)
        assert status == 200
    reader, writer = await connect()  # type: ignore[operator]
    writer.write(_head("GET", "/healthz"))
    status, headers, body = await _response(reader)
    assert (status, _code(body), headers["retry-after"]) == (503, "unavailable", "1")
    assert await reader.read() == b""


async def test_a_huge_head_is_answered_431(connect: object) -> None:
    reader, writer = await connect()  # type: ignore[operator]
    writer.write(_head("GET", "/healthz", f"X-Big: {'b' * 20_000}"))
    status, _, body = await _response(reader)
    assert (status, _code(body)) == (431, "headers_too_large")


async def test_a_huge_head_still_arriving_is_answered_431(connect: object) -> None:
    reader, writer = await connect()  # type: ignore[operator]
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 20_000)
    status, _, body = await _response(reader)
    assert (status, _code(body)) == (431, "headers_too_large")
    assert await reader.read() == b""


def _many_parameters() -> str:
    """The review's query: 8,000 distinct parameters, about 63 KB."""
    return "&".join(f"parameter{number:x}=1" for number in range(8000))[:63_000]


async def test_8000_query_parameters_are_refused(connect: object) -> None:
    reader, writer = await connect()  # type: ignore[operator]
    writer.write(_head("GET", f"/runs?{_many_parameters()}"))
    status, _, body = await _response(reader)
    assert (status, _code(body)) == (431, "headers_too_large")


@pytest.mark.parametrize(
    "overrides",
    [{"http_max_head_bytes": 256 * 1024, "http_max_query_bytes": 128 * 1024}],
    indirect=True,
)
async def test_8000_query_parameters_in_a_large_head_are_refused(connect: object) -> None:
    reader, writer = await connect()  # type: ignore[operator]
    writer.write(_head("GET", f"/runs?{_many_parameters()}"))
    status, _, body = await _response(reader)
    assert (status, _code(body)) == (400, "too_many_parameters")
