"""GET /runs, /runs/{id}, /functions and the API's own routes, over a real socket."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import orjson
import pytest

from reverb_ingress_gateway import Gateway
from reverb_store import new_id
from reverb_store.control import (
    AppDefinition,
    FunctionDefinition,
    HostLease,
    TriggerDefinition,
    register_app,
)
from reverb_store.flow.options import DebounceOptions, FlowOptions, SingletonOptions

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield client


async def _insert_run(
    connection: asyncpg.Connection,
    run_id: str,
    function_id: str,
    status: str,
    event_ids: list[str],
    **columns: object,
) -> None:
    names = ["id", "function_id", "app_id", "status", "event_ids", "max_attempts", *columns]
    values = [run_id, function_id, "shop", status, event_ids, 5, *columns.values()]
    placeholders = ", ".join(f"${index}" for index in range(1, len(values) + 1))
    await connection.execute(
        f"INSERT INTO reverb.runs ({', '.join(names)}) VALUES ({placeholders})", *values
    )


@pytest.fixture
async def runs(connection: asyncpg.Connection) -> list[str]:
    """Seven runs, ids ascending (oldest first): functions, statuses and events vary."""
    ids = sorted(new_id() for _ in range(7))
    shape = [
        ("charge", "completed", ["e1"]),
        ("charge", "failed", ["e2"]),
        ("refund", "queued", ["e2"]),
        ("charge", "running", ["e3"]),
        ("refund", "sleeping", []),
        ("charge", "queued", ["e4"]),
        ("charge", "waiting", ["e5", "e4"]),
    ]
    for run_id, (function_id, status, event_ids) in zip(ids, shape, strict=True):
        await _insert_run(connection, run_id, function_id, status, event_ids)
    return ids


async def _ids(client: httpx.AsyncClient, query: str) -> list[str]:
    response = await client.get(f"/runs?{query}")
    assert response.status_code == 200, response.text
    return [run["id"] for run in response.json()["runs"]]


async def test_runs_are_filtered_newest_first(client: httpx.AsyncClient, runs: list[str]) -> None:
    assert await _ids(client, "") == runs[::-1]
    assert await _ids(client, "function=refund") == [runs[4], runs[2]]
    assert await _ids(client, "status=queued") == [runs[5], runs[2]]
    assert await _ids(client, "status=queued,failed") == [runs[5], runs[2], runs[1]]
    assert await _ids(client, "status=queued&status=failed") == [runs[5], runs[2], runs[1]]
    assert await _ids(client, "event=e2") == [runs[2], runs[1]]
    assert await _ids(client, "event=e4") == [runs[6], runs[5]]
    assert await _ids(client, "function=charge&status=queued&event=e4") == [runs[5]]
    assert await _ids(client, "function=nothing") == []


async def test_run_pages_cover_every_run_once(client: httpx.AsyncClient, runs: list[str]) -> None:
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        response = await client.get("/runs", params={"limit": 3, "cursor": cursor})
        page = response.json()
        seen += [run["id"] for run in page["runs"]]
        pages += 1
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert seen == runs[::-1]
    assert pages == 3
    charge = await client.get("/runs", params={"function": "charge", "limit": 2})
    next_page = await client.get(
        "/runs", params={"function": "charge", "limit": 2, "cursor": charge.json()["next_cursor"]}
    )
    assert [run["id"] for run in next_page.json()["runs"]] == [runs[3], runs[1]]


@pytest.mark.parametrize(
    "query", ["status=asleep", "status=QUEUED,nope", "limit=0", "limit=501", "limit=-1", "cursor=x"]
)
async def test_bad_run_queries_are_400(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/runs?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_argument"


async def test_a_run_shows_its_steps_in_order(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    error = {"type": "ValueError", "message": "card declined", "stack": "Traceback ..."}
    await _insert_run(
        connection,
        "run-1",
        "charge",
        "failed",
        ["e1"],
        attempt=2,
        invocations=3,
        error=orjson.dumps(error).decode(),
        started_at=T0,
        ended_at=T0 + timedelta(seconds=9),
    )
    steps = [
        # (id, kind, status, started_at offset, output, error)
        ("notify", "send_event", "completed", 5, '["ev-1"]', None),
        ("charge", "run", "failed", 2, None, orjson.dumps(error).decode()),
        ("wait", "sleep", "completed", 1, "null", None),
        ("lookup", "run", "completed", 1, '{"amount": 12}', None),
    ]
    for step_id, kind, status, offset, output, step_error in steps:
        await connection.execute(
            "INSERT INTO reverb.steps (run_id, id, name, kind, status, attempts, output, error,"
            " started_at, ended_at) VALUES ('run-1', $1, $1, $2, $3, 2, $4, $5, $6, $6)",
            step_id,
            kind,
            status,
            output,
            step_error,
            T0 + timedelta(seconds=offset),
        )
    response = await client.get("/runs/run-1")
    assert response.status_code == 200
    run = response.json()
    assert [step["id"] for step in run["steps"]] == ["wait", "lookup", "charge", "notify"]
    assert (run["status"], run["attempt"], run["invocations"]) == ("failed", 2, 3)
    assert run["error"] == error
    assert run["started_at"] == "2025-03-01T12:00:00.000000Z"
    assert run["ended_at"] == "2025-03-01T12:00:09.000000Z"
    lookup, charge, notify = run["steps"][1:]
    assert lookup == {
        "id": "lookup",
        "name": "lookup",
        "kind": "run",
        "status": "completed",
        "attempts": 2,
        "started_at": "2025-03-01T12:00:01.000000Z",
        "ended_at": "2025-03-01T12:00:01.000000Z",
        "output": {"amount": 12},
        "error": None,
        "wake_at": None,
        "child_run_id": None,
    }
    assert (charge["status"], charge["output"], charge["error"]) == ("failed", None, error)
    assert (notify["kind"], notify["output"]) == ("send_event", ["ev-1"])
    listed = (await client.get("/runs")).json()["runs"][0]
    assert listed["error"] == {**error, "stack": ""}
    assert "steps" not in listed


async def test_a_run_shows_its_trace_id(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    traced, untraced = new_id(), new_id()
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    await _insert_run(connection, traced, "charge", "queued", ["e1"], traceparent=traceparent)
    await _insert_run(connection, untraced, "charge", "queued", [])

    shown = (await client.get(f"/runs/{traced}")).json()
    listed = {run["id"]: run for run in (await client.get("/runs")).json()["runs"]}

    assert shown["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert listed[traced]["trace_id"] == shown["trace_id"]
    # A run no request started has a trace of its own, named after the run.
    assert listed[untraced]["trace_id"] == untraced.replace("-", "")


async def test_an_unknown_run_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/runs/{new_id()}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# A function's flow-control options, when it has none.
NO_FLOW_CONTROL: dict[str, object] = {
    "concurrency": [],
    "throttle": None,
    "rate_limit": None,
    "priority": None,
    "idempotency": "",
    "debounce": None,
    "singleton": None,
    "batch": None,
    # No cancel_on either.
    "cancel_on": [],
    # Registration-only (checked when the app registers, never stored): always empty here.
    "waits": [],
}


async def test_functions_are_listed_with_their_triggers(
    client: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    app = AppDefinition(
        "shop",
        (
            FunctionDefinition(
                "handle-sign-up",
                "Handle sign-up",
                4,
                (TriggerDefinition(event="user.signed_up"),),
                flow=FlowOptions(
                    idempotency="event.data.email",
                    debounce=DebounceOptions(timedelta(seconds=5), timeout=timedelta(minutes=1)),
                    singleton=SingletonOptions("event.data.email", "cancel"),
                ),
            ),
            FunctionDefinition(
                "daily-report",
                "daily-report",
                0,
                (TriggerDefinition(cron="0 9 * * *", timezone="Europe/Paris"),),
            ),
        ),
    )
    await register_app(connection, app, HostLease("127.0.0.1:8290", timedelta(seconds=30)), T0)
    response = await client.get("/functions")
    assert response.status_code == 200
    assert response.json() == {
        "functions": [
            {
                "id": "daily-report",
                "name": "daily-report",
                "app_id": "shop",
                "retries": 0,
                "triggers": [
                    {
                        "cron": "0 9 * * *",
                        "timezone": "Europe/Paris",
                        "overlap": "allow",
                        "catch_up": "latest",
                        "catch_up_window_seconds": 3600.0,
                        "jitter_seconds": 0.0,
                        # 09:00 in Paris after T0 (CET, UTC+1).
                        "next_at": "2025-03-02T08:00:00.000000Z",
                        "last_at": None,
                        "missed": 0,
                        "skipped": 0,
                    }
                ],
                "on_failure": "",
                "start_timeout_ms": 0,
                "finish_timeout_ms": 0,
                "paused": False,
                "paused_at": None,
                **NO_FLOW_CONTROL,
            },
            {
                "id": "handle-sign-up",
                "name": "Handle sign-up",
                "app_id": "shop",
                "retries": 4,
                "triggers": [{"event": "user.signed_up"}],
                "on_failure": "",
                "start_timeout_ms": 0,
                "finish_timeout_ms": 0,
                "paused": False,
                "paused_at": None,
                **NO_FLOW_CONTROL,
                "idempotency": "event.data.email",
                "debounce": {
                    "period": {"seconds": 5, "nanos": 0},
                    "key": "",
                    "timeout": {"seconds": 60, "nanos": 0},
                },
                "singleton": {"key": "event.data.email", "mode": "cancel"},
            },
        ]
    }


async def test_health_and_the_openapi_document(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    document = (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/events",
        "/events/{event_id}",
        "/runs",
        "/runs/{run_id}",
        "/runs/{run_id}/replay",
        "/runs/replay",
        "/runs/{run_id}/cancel",
        "/runs/cancel",
        "/functions",
        "/functions/{function_id}/pause",
        "/functions/{function_id}/resume",
        "/functions/{id}/schedule/trigger",
        "/functions/{id}/schedule/backfill",
        "/logs",
        "/logs/events",
        "/logs/events/{event_id}",
        "/logs/functions",
        "/logs/functions/{run_id}",
        "/logs/errors",
        "/logs/dead-letter",
        "/webhooks",
        "/webhooks/{source}",
        "/webhooks/deliveries",
        "/webhooks/deliveries/{id}/replay",
        "/healthz",
        "/openapi.json",
    }
    error = document["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]
    assert "413" in document["paths"]["/events"]["post"]["responses"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("DELETE", "/events", 405, "method_not_allowed"),
        ("POST", "/runs", 405, "method_not_allowed"),
        ("PUT", "/functions", 405, "method_not_allowed"),
    ],
)
async def test_unknown_routes_and_methods(
    client: httpx.AsyncClient, method: str, path: str, status: int, code: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
