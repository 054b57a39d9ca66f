"""The generic transcoder, as HTTP clients meet it: path and query parameters, bodies, inline
JSON both ways, and its errors (through the app over httpx's ASGI transport)."""

from collections.abc import AsyncIterator

import asyncpg
import httpx
import orjson
import pytest

from reverb_ingress_gateway import GatewaySettings
from reverb_ingress_gateway.health import Health
from reverb_ingress_gateway.http.app import build_app
from reverb_ingress_gateway.servicer import IngressService
from reverb_store import new_id


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = GatewaySettings(database_url=database_url, dev=True)
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=4)
    app = build_app(IngressService(pool, settings), None, settings, Health(pool, settings))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client
    await pool.close()


async def _insert_run(
    connection: asyncpg.Connection, run_id: str, status: str, **columns: object
) -> None:
    names = ["id", "function_id", "app_id", "status", "event_ids", "max_attempts", *columns]
    values = [run_id, "charge", "shop", status, [], 5, *columns.values()]
    placeholders = ", ".join(f"${index}" for index in range(1, len(values) + 1))
    await connection.execute(
        f"INSERT INTO reverb.runs ({', '.join(names)}) VALUES ({placeholders})", *values
    )


async def test_a_path_parameter_may_span_segments_where_declared(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/events", json={"name": "order.paid", "id": "orders/7/paid"})
    assert response.json() == {"ids": ["orders/7/paid"]}
    event = await client.get("/events/orders/7/paid")
    assert (event.status_code, event.json()["id"]) == (200, "orders/7/paid")
    # /runs/{id} takes one segment: a longer path is no route.
    nested = await client.get("/runs/a/b")
    assert (nested.status_code, nested.json()["error"]["code"]) == (404, "not_found")


async def test_event_data_and_outputs_stay_inline_json(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    data = {"big": 2**53 + 1, "nested": {"list": [1, 2.5, "x", None, True]}, "text": "é\n"}
    [event_id] = (await client.post("/events", json={"name": "a", "data": data})).json()["ids"]
    assert (await client.get(f"/events/{event_id}")).json()["data"] == data
    outputs = {"object": '{"amount": 12}', "text": '"done"', "null": "null", "list": "[1, [2]]"}
    for run_id, output in outputs.items():
        await _insert_run(connection, run_id, "completed", output=output)
    await _insert_run(connection, "pending", "queued")
    for run_id, output in outputs.items():
        run = (await client.get(f"/runs/{run_id}")).json()
        assert run["output"] == orjson.loads(output)
    assert (await client.get("/runs/pending")).json()["output"] is None


async def test_one_event_or_a_list_and_unknown_keys_are_ignored(
    client: httpx.AsyncClient,
) -> None:
    one = await client.post("/events", json={"name": "a", "id": "one", "extra": [1]})
    assert (one.status_code, one.json()) == (202, {"ids": ["one"]})
    many = await client.post("/events", json=[{"name": "a", "id": "two"}, {"name": "b"}])
    assert many.status_code == 202 and many.json()["ids"][0] == "two"
    assert len(many.json()["ids"]) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"data": {}}, "event.name is required"),
        ({"name": None}, "event.name is required"),
        ({"name": ["a"]}, "event.name must be a string"),
        ({"name": "a", "ts": {"at": 1}}, "event.ts must be an ISO-8601 time or Unix milliseconds"),
        ({"name": "a", "ts": -1}, "event.ts is out of range"),
        ([{"name": "a"}, 7], "events[1] must be an object"),
        (True, "the body must be an event object or a list of event objects"),
    ],
)
async def test_a_body_that_does_not_fit_names_the_bad_value(
    client: httpx.AsyncClient, body: object, message: str
) -> None:
    response = await client.post("/events", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "invalid_event", "message": message}


async def test_a_repeated_enum_is_repeated_or_comma_separated(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    ids = sorted(new_id() for _ in range(3))
    for run_id, status in zip(ids, ["queued", "failed", "sleeping"], strict=True):
        await _insert_run(connection, run_id, status)

    async def listed(query: str) -> list[str]:
        response = await client.get(f"/runs?{query}")
        assert response.status_code == 200, response.text
        return [run["status"] for run in response.json()["runs"]]

    assert await listed("status=queued&status=SLEEPING") == ["sleeping", "queued"]
    assert await listed("status=queued,%20failed,") == ["failed", "queued"]
    assert await listed("status=") == ["sleeping", "failed", "queued"]
    assert await listed("unknown=1&status=failed") == ["failed"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "status=queued,parked",
            "unknown status 'parked'; one of: queued, running, sleeping, waiting, completed,"
            " failed, cancelled, paused",
        ),
        ("limit=ten", "limit must be an integer from 1 to 500"),
        ("limit=501", "limit must be an integer from 1 to 500"),
        ("limit=1.5", "limit must be an integer from 1 to 500"),
    ],
)
async def test_a_bad_query_parameter_is_named(
    client: httpx.AsyncClient, query: str, message: str
) -> None:
    response = await client.get(f"/runs?{query}")
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "invalid_argument", "message": message}


async def test_an_empty_path_id_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/events/")
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "invalid_argument", "message": "id is required"}


async def test_unset_values_are_null_and_a_page_has_its_cursor(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    ids = sorted(new_id() for _ in range(2))
    for run_id in ids:
        await _insert_run(connection, run_id, "queued")
    page = (await client.get("/runs?limit=1")).json()
    assert isinstance(page["next_cursor"], str) and page["next_cursor"]
    [run] = page["runs"]
    assert {key: run[key] for key in ("started_at", "ended_at", "parent_run_id", "error")} == {
        "started_at": None,
        "ended_at": None,
        "parent_run_id": None,
        "error": None,
    }
    last = (await client.get("/runs", params={"limit": 1, "cursor": page["next_cursor"]})).json()
    assert [item["id"] for item in last["runs"]] == [ids[0]]
    assert last["next_cursor"] is None


async def test_a_wrong_method_names_the_allowed_ones(client: httpx.AsyncClient) -> None:
    response = await client.patch("/events")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
