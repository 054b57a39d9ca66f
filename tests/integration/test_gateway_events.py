"""POST /events and reading events back, over a real socket, against a real PostgreSQL."""

from collections.abc import AsyncIterator

import asyncpg
import httpx
import orjson
import pytest

from reverb_ingress_gateway import Gateway, GatewaySettings, start
from reverb_store.jobs import ProcessEvent
from tests.integration.listeners import listen


def _settings(database_url: str, **overrides: object) -> GatewaySettings:
    return GatewaySettings(
        database_url=database_url,
        http_address="127.0.0.1:0",
        ingress_address="127.0.0.1:0",
        dev=True,
        log_json=False,
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[Gateway]:
    gateway = await start(_settings(database_url))
    yield gateway
    await gateway.stop()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield client


@pytest.fixture(autouse=True)
async def listening(connection: asyncpg.Connection) -> None:
    """A function listens to the names these tests send (others get no fan-out job)."""
    names = ["user.signed_up", "a", "b", "c", "paid", "traced", "good", "big", "small", "e"]
    await listen(connection, *names, "fits")


async def _stored(connection: asyncpg.Connection) -> tuple[int, int]:
    events = await connection.fetchval("SELECT count(*) FROM reverb.events")
    jobs = await connection.fetchval("SELECT count(*) FROM pgqueuer")
    return events, jobs


async def _fan_out_jobs(connection: asyncpg.Connection) -> list[ProcessEvent]:
    rows = await connection.fetch(
        "SELECT payload FROM pgqueuer WHERE entrypoint = 'process_event' ORDER BY id"
    )
    return [ProcessEvent.decode(row["payload"]) for row in rows]


async def test_an_event_is_stored_with_its_fan_out_job(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    response = await client.post("/events", json={"name": "user.signed_up", "data": {"n": 1}})
    assert response.status_code == 202
    [event_id] = response.json()["ids"]
    row = await connection.fetchrow("SELECT name, data FROM reverb.events WHERE id = $1", event_id)
    assert row is not None
    assert (row["name"], orjson.loads(row["data"])) == ("user.signed_up", {"n": 1})
    assert [job.event_ids for job in await _fan_out_jobs(connection)] == [(event_id,)]


async def test_an_event_no_function_listens_to_gets_no_fan_out_job(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    response = await client.post("/events", json={"name": "nobody.listens"})
    assert response.status_code == 202
    assert await _stored(connection) == (1, 0)


async def test_a_batch_keeps_its_order_ids_and_times(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    response = await client.post(
        "/events",
        json=[
            {"name": "a"},
            {"name": "b", "id": "order-7", "ts": "2024-05-01T10:00:00+02:00"},
            {"name": "c", "ts": 1700000000000},
        ],
    )
    assert response.status_code == 202
    ids = response.json()["ids"]
    assert len(ids) == 3 and ids[1] == "order-7"
    listed = (await client.get("/events/order-7")).json()
    assert listed["ts"] == "2024-05-01T08:00:00.000000Z"
    assert listed["data"] == {}
    assert (await client.get(f"/events/{ids[2]}")).json()["ts"] == "2023-11-14T22:13:20.000000Z"
    assert [job.event_ids for job in await _fan_out_jobs(connection)] == [tuple(ids)]


async def test_a_repeated_id_is_accepted_once(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    for _ in range(2):
        response = await client.post("/events", json={"name": "paid", "id": "invoice-1"})
        assert response.status_code == 202
        assert response.json() == {"ids": ["invoice-1"]}
    assert await _stored(connection) == (1, 1)


async def test_the_request_traceparent_reaches_the_fan_out_job(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await client.post(
        "/events",
        json={"name": "traced"},
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    assert response.status_code == 202
    [job] = await _fan_out_jobs(connection)
    assert job.traceparent is not None and job.traceparent.split("-")[1] == trace_id


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"data": {}}, "events[1].name is required"),
        ({"name": 5}, "events[1].name must be a string"),
        ({"name": ""}, "events[1]: name is required"),
        ({"name": "x", "data": [1]}, "events[1].data must be an object"),
        ({"name": "x", "data": "text"}, "events[1].data must be an object"),
        ({"name": "x", "ts": "yesterday"}, "events[1].ts must be an ISO-8601"),
        ({"name": "x", "ts": True}, "events[1].ts must be an ISO-8601"),
        ({"name": "x", "id": 12}, "events[1].id must be a non-empty string"),
        ({"name": "x", "id": ""}, "events[1].id must be a non-empty string"),
        ({"name": "bad\nname"}, "events[1]: name must be"),
        ({"name": "x", "data": {"text": "nul\u0000"}}, "events[1]: data must not contain"),
        ("not an object", "events[1] must be an object"),
    ],
)
async def test_a_batch_with_one_bad_event_stores_nothing(
    client: httpx.AsyncClient, connection: asyncpg.Connection, event: object, message: str
) -> None:
    response = await client.post("/events", json=[{"name": "good"}, event, {"name": "good"}])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_event"
    assert message in error["message"]
    assert await _stored(connection) == (0, 0)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"name": "x"', "invalid_json"),
        (b"", "invalid_json"),
        (b"[]", "invalid_event"),
        (b'"just a string"', "invalid_event"),
        (b"42", "invalid_event"),
        (b"null", "invalid_event"),
    ],
)
async def test_a_body_that_is_not_events_is_refused(
    client: httpx.AsyncClient, body: bytes, code: str
) -> None:
    response = await client.post(
        "/events", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


async def test_a_body_that_is_not_json_is_unsupported(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/events", content=b"name=x", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


async def test_an_event_over_the_limit_is_too_large(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    limit = 512 * 1024
    wrapper = len(orjson.dumps({"blob": ""}))
    fits = {"name": "big", "data": {"blob": "x" * (limit - wrapper)}}
    over = {"name": "big", "data": {"blob": "x" * (limit - wrapper + 1)}}
    assert (await client.post("/events", json=fits)).status_code == 202
    response = await client.post("/events", json=[{"name": "small"}, over])
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large" and "events[1]" in error["message"]
    assert await _stored(connection) == (1, 1)


async def test_too_many_events_in_one_request(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    response = await client.post("/events", json=[{"name": "e"}] * 5001)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_many_events"
    assert (await client.post("/events", json=[{"name": "e"}] * 5000)).status_code == 202
    assert await _stored(connection) == (5000, 1)


async def test_a_body_over_the_limit_is_refused_while_it_streams(
    database_url: str, connection: asyncpg.Connection
) -> None:
    limit = 64 * 1024
    gateway = await start(_settings(database_url, max_body_bytes=limit))
    body = orjson.dumps([{"name": "e", "data": {"pad": "x" * 100}}] * 1000)
    assert len(body) > limit + 1
    just_over = body[: limit + 1]

    async def chunks() -> AsyncIterator[bytes]:
        for start_at in range(0, len(just_over), 4096):
            yield just_over[start_at : start_at + 4096]

    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
            headers = {"content-type": "application/json"}
            declared = await client.post("/events", content=just_over, headers=headers)
            streamed = await client.post("/events", content=chunks(), headers=headers)
            exact = await client.post(
                "/events", content=b" " * (limit - 16) + b'{"name": "fits"}', headers=headers
            )
    finally:
        await gateway.stop()
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
    assert exact.status_code == 202
    assert await _stored(connection) == (1, 1)


async def test_events_are_listed_newest_first_by_page(client: httpx.AsyncClient) -> None:
    for index in range(5):
        name = "odd" if index % 2 else "even"
        await client.post("/events", json={"name": name, "id": f"e{index}"})
    seen = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/events", params=params)).json()
        seen += [event["id"] for event in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["e4", "e3", "e2", "e1", "e0"]
    odd = (await client.get("/events", params={"name": "odd"})).json()
    assert [event["id"] for event in odd["events"]] == ["e3", "e1"]
    assert odd["next_cursor"] is None
    assert set(odd["events"][0]) == {"id", "name", "data", "ts", "received_at"}


async def test_an_event_shows_the_runs_it_triggered(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    [event_id] = (await client.post("/events", json={"name": "a"})).json()["ids"]
    await connection.execute(
        "INSERT INTO reverb.runs (id, function_id, app_id, status, event_ids, max_attempts)"
        " VALUES ('run-1', 'fn', 'app', 'queued', $1, 5), ('run-2', 'other', 'app', 'queued',"
        " '{}', 5)",
        [event_id],
    )
    event = (await client.get(f"/events/{event_id}")).json()
    assert event["id"] == event_id
    assert [(run["id"], run["status"]) for run in event["runs"]] == [("run-1", "queued")]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/events/no-such-event", 404, "not_found"),
        ("/events?limit=0", 400, "invalid_argument"),
        ("/events?limit=501", 400, "invalid_argument"),
        ("/events?limit=ten", 400, "invalid_argument"),
        ("/events?cursor=not-a-cursor", 400, "invalid_argument"),
    ],
)
async def test_bad_event_reads(
    client: httpx.AsyncClient, path: str, status: int, code: str
) -> None:
    response = await client.get(path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
