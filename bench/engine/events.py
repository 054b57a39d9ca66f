"""Sending events through POST /events and reading runs through GET /runs/{id}."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bench.http import Connection

Event = dict[str, Any]


class ApiError(Exception):
    pass


async def post(connection: Connection, body: Event | Sequence[Event]) -> list[str]:
    """POST /events; the accepted ids (202 {"ids": [...]})."""
    response = await connection.request("POST", "/events", body)
    if response.status != 202:
        raise ApiError(f"POST /events: {response.status} {response.body[:200]!r}")
    ids = response.json()["ids"]
    return [str(each) for each in ids]


async def send_batches(
    connection: Connection, events: Sequence[Event], size: int = 100
) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(events), size):
        ids.extend(await post(connection, list(events[start : start + size])))
    return ids


async def get_run(connection: Connection, run_id: str) -> dict[str, Any]:
    response = await connection.request("GET", f"/runs/{run_id}")
    if response.status != 200:
        raise ApiError(f"GET /runs/{run_id}: {response.status} {response.body[:200]!r}")
    body = response.json()
    run = body.get("run", body) if isinstance(body, dict) else body
    if not isinstance(run, dict):
        raise ApiError(f"GET /runs/{run_id}: unexpected body {response.body[:200]!r}")
    return run


def timestamp(value: Any) -> float:
    """Seconds since the epoch from an ISO 8601 string (or a number of seconds)."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ApiError(f"not a timestamp: {value!r}")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def first_step_started(run: dict[str, Any]) -> float:
    steps = run.get("steps") or []
    if not steps:
        raise ApiError(f"run {run.get('id')} has no steps")
    return timestamp(steps[0].get("started_at") or steps[0].get("started"))


def run_ended(run: dict[str, Any]) -> float:
    return timestamp(run.get("ended_at") or run.get("ended"))
