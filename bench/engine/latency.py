"""Latency at a steady rate: from the client's send to the first step's start, and to the end.

Events for a 1-step function are sent open-loop at a fixed rate (each request on
its own schedule, so a slow answer does not delay the next). The send time is
the client's clock just before the request is written; the first step's
started_at and the run's ended_at come from GET /runs/{id}. One machine, one clock.
"""

import asyncio
import time

from bench.engine.events import first_step_started, get_run, post, run_ended
from bench.engine.observe import Scope
from bench.engine.session import Engine
from bench.http import Connection
from bench.latency import percentiles
from bench.stats import percentile

CONNECTIONS = 8
FUNCTION = "bench-one-step"


async def measure(engine: Engine, rate: float, seconds: float) -> dict[str, float]:
    await engine.observer.drain()
    count = int(rate * seconds)
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put_nowait(engine.cluster.connection())
    sent: dict[str, float] = {}

    async def send(index: int) -> None:
        connection = await pool.get()
        try:
            began = time.time()
            ids = await post(connection, {"name": "bench.one", "data": {"index": index}})
            sent[ids[0]] = began
        finally:
            pool.put_nowait(connection)

    tasks = []
    scope = Scope.starting_now(FUNCTION)
    origin = time.monotonic()
    for index in range(count):
        pause = origin + index / rate - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        tasks.append(asyncio.create_task(send(index)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    observer = engine.observer
    await observer.wait_finished(scope, count, within=120)
    rows = await observer.fetch(
        "SELECT id, event_ids[1] AS event_id FROM reverb.runs"
        " WHERE function_id = ANY($1::text[]) AND id >= $2",
        *scope.arguments,
    )
    to_start: list[float] = []
    to_end: list[float] = []
    connection = pool.get_nowait()
    for row in rows:
        run = await get_run(connection, row["id"])
        began = sent[row["event_id"]]
        to_start.append((first_step_started(run) - began) * 1000)
        to_end.append((run_ended(run) - began) * 1000)
    while not pool.empty():
        await pool.get_nowait().close()
    await connection.close()
    engine.touched()
    return {
        **percentiles("request→first step", to_start),
        **percentiles("request→completed", to_end),
        **await breakdown(engine, scope, sent),
    }


_HOPS = """
SELECT event.id AS event_id,
       extract(epoch FROM event.received_at) AS received,
       extract(epoch FROM run.created_at) AS created,
       extract(epoch FROM run.started_at) AS claimed,
       extract(epoch FROM step.started_at) AS stepped
FROM reverb.runs AS run
JOIN reverb.events AS event ON event.id = run.event_ids[1]
JOIN reverb.steps AS step ON step.run_id = run.id
WHERE run.function_id = ANY($1::text[]) AND run.id >= $2
"""
HOPS = (
    "p50 hop: send→event stored",
    "p50 hop: event→run created (fan-out job)",
    "p50 hop: run created→claimed",
    "p50 hop: claimed→step started (Invoke)",
)


async def breakdown(engine: Engine, scope: Scope, sent: dict[str, float]) -> dict[str, float]:
    """Where the time to the first step goes, from the timestamps the engine stores."""
    rows = await engine.observer.fetch(_HOPS, *scope.arguments)
    hops: list[list[float]] = [[], [], [], []]
    for row in rows:
        marks = [sent[row["event_id"]], *(float(row[name]) for name in _MARKS)]
        for index in range(4):
            hops[index].append((marks[index + 1] - marks[index]) * 1000)
    return {name: percentile(values, 0.5) for name, values in zip(HOPS, hops, strict=True)}


_MARKS = ("received", "created", "claimed", "stepped")
