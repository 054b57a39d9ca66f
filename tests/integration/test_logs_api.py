"""Reverb's logs API over real HTTP, the same tests against both sinks: PostgreSQL
(reverb.logs) and MongoDB (nx-27017's wire-protocol server, or REVERB_TEST_MONGODB_URL).

The documents are written through the sink the workers use; the gateway reads them with
the reader its settings name. The original's bugs are checked absent: empty pages and
pages past the end are 200 without `next`, bad input is 400, links point at their route.
"""

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from reverb_ingress_gateway import Gateway, GatewaySettings, start
from reverb_store.execution import ErrorRecord
from reverb_store.logs import LogDocument, PostgresSink, Sink, new_log_id
from reverb_store.logs.mongodb import MongoSink

BASE = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)


@dataclass
class Logs:
    sink: Sink
    client: httpx.AsyncClient

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params)

    async def ok(self, path: str, **params: Any) -> dict[str, Any]:
        response = await self.get(path, **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(params=["postgres", "mongodb"])
async def logs(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Logs]:
    sink_name: str = request.param
    settings = GatewaySettings(
        database_url=database_url,
        http_address="127.0.0.1:0",
        ingress_address="127.0.0.1:0",
        dev=True,
    )
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    sink: Sink
    if sink_name == "mongodb":
        url = request.getfixturevalue("mongodb_url")
        collection = f"logs_{secrets.token_hex(6)}"
        settings = settings.model_copy(
            update={
                "log_sink": "mongodb",
                "mongodb_url": SecretStr(url),
                "mongodb_collection": collection,
            }
        )
        sink = MongoSink(url, "reverb_tests", collection)
        settings = settings.model_copy(update={"mongodb_database": "reverb_tests"})
    else:
        sink = PostgresSink(pool)
    await sink.open()
    gateway: Gateway = await start(settings)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield Logs(sink, client)
    await gateway.stop()
    await sink.close()
    await pool.close()


def document(
    minute: int,
    message: str,
    *,
    level: str = "info",
    kind: str = "run.started",
    run_id: str | None = "run-1",
    event_id: str | None = "event-1",
    event_name: str | None = "shop.order",
    error: ErrorRecord | None = None,
) -> LogDocument:
    return LogDocument(
        new_log_id(),
        BASE + timedelta(minutes=minute),
        level,  # type: ignore[arg-type]
        kind,
        message,
        event_id=event_id,
        event_name=event_name,
        run_id=run_id,
        function_id=None if run_id is None else "charge",
        error=error,
    )


def messages(page: dict[str, Any]) -> list[str]:
    return [
        next(iter(v for k, v in item.items() if k != "links"))["message"] for item in page["logs"]
    ]


async def test_logs_come_in_cursor_pages_oldest_first_and_follow_from_the_cursor(
    logs: Logs,
) -> None:
    await logs.sink.write([document(minute, f"line {minute}") for minute in (3, 1, 2, 0, 4)])

    first = await logs.ok("/logs", limit=2)
    assert messages(first) == ["line 0", "line 1"]
    assert first["links"]["self"] == "/logs?limit=2"
    assert first["links"]["next"] == f"/logs?cursor={first['cursor']}&limit=2"
    second = await logs.ok("/logs", cursor=first["cursor"], limit=2)
    assert messages(second) == ["line 2", "line 3"]
    last = await logs.ok("/logs", cursor=second["cursor"], limit=2)
    assert messages(last) == ["line 4"]
    assert last["links"].get("next") is None
    # Polling from the end: an empty 200 that keeps the cursor, then what came since.
    empty = await logs.ok("/logs", cursor=last["cursor"])
    assert empty["logs"] == [] and empty["cursor"] == last["cursor"]
    assert empty["links"].get("next") is None
    await logs.sink.write([document(5, "line 5")])
    assert messages(await logs.ok("/logs", cursor=last["cursor"])) == ["line 5"]


async def test_an_item_is_keyed_by_what_it_is_about_with_links(logs: Logs) -> None:
    await logs.sink.write(
        [
            document(0, "event received", kind="event.received", run_id=None),
            document(1, "run started"),
            document(
                2,
                "run failed",
                level="error",
                kind="run.failed",
                error=ErrorRecord("ValueError", "bad card", "Traceback …"),
            ),
        ]
    )
    event, function, error = (await logs.ok("/logs"))["logs"]
    assert set(event) == {"event", "links"}
    assert event["links"]["event"] == "/logs/events/event-1"
    assert set(function) == {"function", "links"}
    assert function["function"]["meta"]["run_id"] == "run-1"
    assert function["links"]["function"] == "/logs/functions/run-1"
    assert set(error) == {"error", "links"}
    assert error["error"]["meta"]["error"]["type"] == "ValueError"
    assert error["error"]["level"] == "error"
    shown = function["function"]
    assert set(shown) >= {"id", "timestamp", "level", "message", "meta", "trace_id", "span_id"}
    assert shown["timestamp"].startswith("2026-12-02T07:01:00")


async def test_time_ranges_filter_and_bad_input_is_a_400_never_a_500(logs: Logs) -> None:
    await logs.sink.write([document(minute, f"line {minute}") for minute in range(5)])

    ranged = await logs.ok(
        "/logs", startTime="2026-12-02T07:01:00Z", endTime="2026-12-02T07:03:00Z"
    )
    assert messages(ranged) == ["line 1", "line 2"]
    only_start = await logs.ok("/logs/errors", startTime="2026-12-02T07:04:00+00:00")
    assert only_start["logs"] == []
    for path, params in [
        ("/logs", {"cursor": "not-a-cursor"}),
        ("/logs", {"startTime": "yesterday"}),
        ("/logs", {"endTime": "2026-13-45"}),
        ("/logs", {"startTime": "2026-12-02T08:00:00Z", "endTime": "2026-12-02T07:00:00Z"}),
        ("/logs", {"limit": "0"}),
        ("/logs", {"limit": "ten"}),
        ("/logs", {"level": "loud"}),
        ("/logs/events", {"page": "0"}),
        ("/logs/events", {"page": "-1"}),
        ("/logs/functions", {"limit": "100000"}),
        ("/logs/dead-letter", {"type": "everything"}),
        ("/logs/errors", {"startTime": "\u0000"}),
    ]:
        response = await logs.get(path, **params)
        assert response.status_code == 400, (path, params, response.text)
        assert set(response.json()["error"]) >= {"code", "message"}


async def test_offset_pages_link_to_their_own_route_and_past_the_end_is_empty(
    logs: Logs,
) -> None:
    await logs.sink.write(
        [
            document(minute, f"order {minute}", kind="event.received", run_id=None)
            for minute in range(5)
        ]
        + [document(9, "other", kind="event.received", run_id=None, event_name="shop.refund")]
    )

    page = await logs.ok("/logs/events", name="shop.order", page=2, limit=2)
    assert messages(page) == ["order 2", "order 3"]
    assert page["links"] == {
        "self": "/logs/events?name=shop.order&page=2&limit=2",
        "previous": "/logs/events?name=shop.order&page=1&limit=2",
        "next": "/logs/events?name=shop.order&page=3&limit=2",
    }
    last = await logs.ok("/logs/events", name="shop.order", page=3, limit=2)
    assert messages(last) == ["order 4"] and last["links"].get("next") is None
    past = await logs.ok("/logs/events", name="shop.order", page=7, limit=2)
    assert past["logs"] == [] and past["links"].get("next") is None
    empty = await logs.ok("/logs/errors")
    assert empty == {
        "logs": [],
        "links": {"self": "/logs/errors?page=1&limit=50", "previous": None, "next": None},
    }


async def test_errors_and_dead_letters_by_type(logs: Logs) -> None:
    failure = ErrorRecord("StepError", "declined", "")
    await logs.sink.write(
        [
            document(0, "run started"),
            document(1, "step failed", level="error", kind="step.failed", error=failure),
            document(2, "run dead", level="error", kind="run.dead_lettered", error=failure),
            document(
                3, "job dead", level="error", kind="event.dead_lettered", run_id=None, event_id=None
            ),
        ]
    )

    assert messages(await logs.ok("/logs/errors")) == ["step failed", "run dead", "job dead"]
    assert messages(await logs.ok("/logs/dead-letter")) == ["run dead", "job dead"]
    assert messages(await logs.ok("/logs/dead-letter", type="all")) == ["run dead", "job dead"]
    assert messages(await logs.ok("/logs/dead-letter", type="function")) == ["run dead"]
    events = await logs.ok("/logs/dead-letter", type="event")
    assert messages(events) == ["job dead"]
    assert events["links"]["self"] == "/logs/dead-letter?type=event&page=1&limit=50"


async def test_unknown_runs_and_events_are_404(logs: Logs) -> None:
    for path in ("/logs/functions/no-such-run", "/logs/events/no-such-event"):
        response = await logs.get(path)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"


async def test_documents_of_one_instant_list_by_id_on_every_route_and_across_cursors(
    logs: Logs,
) -> None:
    """Six documents share a timestamp, written out of id order: every listing orders them
    by id, the same at each read, and cursor pages of two neither skip nor repeat one."""
    ids = [0x0123456789ABCDE0 + step for step in (5, 2, 4, 0, 3, 1)]
    tied = [
        document(1, f"id {log_id & 0xF}", kind="event.received")._replace(id=log_id)
        for log_id in ids
    ]
    await logs.sink.write(tied)
    expected = [f"id {n}" for n in range(6)]

    for path in ("/logs", "/logs/events"):
        assert messages(await logs.ok(path)) == expected, path
        assert messages(await logs.ok(path)) == expected, path
    page = await logs.ok("/logs", limit=2)
    paged = messages(page)
    while page["links"].get("next") is not None:
        page = await logs.ok("/logs", cursor=page["cursor"], limit=2)
        paged += messages(page)
    assert paged == expected
    second = await logs.ok("/logs/events", page=2, limit=2)
    assert messages(second) == ["id 2", "id 3"]
