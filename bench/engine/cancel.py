"""Bulk cancel: `POST /runs/cancel` of many sleeping runs, timed from request to answer.

The runs are those of "bench-sleep" sleeping an hour, created for this measurement
(its Scope); the request names them by creation time and status `sleeping`, as an
operator would. The figure is the answer's wall time (the whole cancel is one
transaction: when it answers, every run is cancelled), checked against the count.
"""

import asyncio
import time
from datetime import UTC, datetime, timedelta

from bench.engine.events import send_batches
from bench.engine.observe import Scope
from bench.engine.session import Engine

FUNCTION = "bench-sleep"
FIGURE = "bulk cancel of the sleeping runs"
UNITS = {FIGURE: "s", "cancelled runs/s": "runs/s"}


async def measure(engine: Engine, runs: int) -> dict[str, float]:
    observer = engine.observer
    await observer.drain()
    created_from = datetime.now(UTC) - timedelta(milliseconds=1)
    scope = Scope.starting_now(FUNCTION)
    connection = engine.cluster.connection()
    try:
        events = [{"name": "bench.sleep", "data": {"seconds": 3600}} for _ in range(runs)]
        await send_batches(connection, events)
    finally:
        await connection.close()
    await _all_sleeping(engine, scope, runs)
    # A new connection: the gateway closes one left idle past its keep-alive timeout.
    connection = engine.cluster.connection()
    try:
        body = {
            "function": FUNCTION,
            "from": created_from.isoformat(),
            "to": (datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
            "status": "sleeping",
        }
        began = time.perf_counter()
        response = await connection.request("POST", "/runs/cancel", body)
        elapsed = time.perf_counter() - began
    finally:
        await connection.close()
    engine.touched()
    if response.status != 200:
        raise RuntimeError(f"POST /runs/cancel: {response.status} {response.body[:200]!r}")
    count = int(response.json()["count"])
    if count != runs:
        raise RuntimeError(f"POST /runs/cancel cancelled {count} of {runs} sleeping runs")
    return {FIGURE: elapsed, "cancelled runs/s": runs / elapsed}


async def _all_sleeping(engine: Engine, scope: Scope, runs: int) -> None:
    deadline = time.monotonic() + max(120.0, runs / 20)
    while True:
        sleeping = await engine.observer.fetchval(
            "SELECT count(*) FROM reverb.runs"
            " WHERE function_id = ANY($1::text[]) AND id >= $2 AND status = 'sleeping'",
            *scope.arguments,
        )
        if sleeping >= runs:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sleeping} of {runs} runs asleep in time")
        await asyncio.sleep(0.25)
