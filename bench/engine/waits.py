"""Waits: runs blocked in `step.wait_for_event`, each on its own key, and the events that
resolve them or match none of them.

`waiters` runs of `bench-wait` each wait for `bench.wait.done` with `data.key` equal to
their own key. Then, in the same repetition:
- ingest with no waiter, then with all of them waiting: single-event requests of
  `bench.wait.done` with keys no run waits for, from 16 clients (the ingest section's
  shape), each rate measured from the first send to the last acceptance, and its
  match_waits jobs drained before the next phase; the figure is their ratio;
- resume latency: events for `resumed` of the waiting runs, sent open-loop at a steady
  rate while the others still wait, from the client's send to the run's "after" step
  starting (the first thing it does once resumed), from the engine's stored times;
- the remaining runs are resolved in batches and must all complete.
"""

import asyncio
import time
import uuid

import structlog

from bench.engine.events import Event, post, send_batches
from bench.engine.observe import Scope
from bench.engine.session import Engine
from bench.http import Connection
from bench.latency import percentiles
from bench.stats import percentile

FUNCTION = "bench-wait"
log = structlog.get_logger("bench")
CLIENTS = 16
CONNECTIONS = 8

FIGURES = {
    "event→run resumed p50": "ms",
    "event→run resumed p99": "ms",
    "events/s matching no wait, 0 waiting": "events/s",
    "events/s matching no wait, waiters waiting": "events/s",
    "ingest with waiters / without": "%",
    "runs waiting": "runs",
    "p50 hop: send→event stored": "ms",
    "p50 hop: event→wait resolved (match_waits job)": "ms",
    "p50 hop: resolved→next step started": "ms",
}


async def measure(
    engine: Engine, waiters: int, requests: int, resumed: int, rate: float
) -> dict[str, float]:
    observer = engine.observer
    await observer.drain()
    prefix = uuid.uuid4().hex
    # A first wait on the key stores it (reverb.wait_keys), so both ingest phases pay the
    # same per-event match_waits job: the ratio is what the waiting runs cost.
    await _start_and_resolve_one(engine, prefix)
    without = await _ingest(engine, requests, prefix)
    await observer.drain()
    scope = Scope.starting_now(FUNCTION)
    await _send_all(
        engine,
        [{"name": "bench.wait.start", "data": {"key": f"{prefix}-{i}"}} for i in range(waiters)],
    )
    waiting = await _until_waiting(engine, scope, waiters)
    log.info("waits: runs waiting", runs=waiting)
    with_waiters = await _ingest(engine, requests, prefix)
    await observer.drain()
    hops = await _resume(engine, scope, prefix, resumed, rate)
    log.info("waits: resumed", runs=resumed)
    await _send_all(
        engine,
        [
            {"name": "bench.wait.done", "data": {"key": f"{prefix}-{i}"}}
            for i in range(resumed, waiters)
        ],
    )
    await observer.wait_finished(scope, waiters, within=max(120.0, waiters / 50))
    engine.touched()
    failed = await observer.failed(scope)
    if failed:
        raise RuntimeError(f"{failed} of {waiters} waiting runs did not complete")
    return {
        **percentiles(
            "event→run resumed", [sum(each) for each in zip(*hops.values(), strict=True)]
        ),
        **{name: percentile(samples, 0.5) for name, samples in hops.items()},
        "events/s matching no wait, 0 waiting": without,
        "events/s matching no wait, waiters waiting": with_waiters,
        "ingest with waiters / without": 100 * with_waiters / without,
        "runs waiting": float(waiting),
    }


async def _send_all(engine: Engine, events: list[Event]) -> None:
    """The events in batches of 100, on a connection of their own."""
    connection = engine.cluster.connection()
    try:
        await send_batches(connection, events)
    finally:
        await connection.close()


async def _start_and_resolve_one(engine: Engine, prefix: str) -> None:
    scope = Scope.starting_now(FUNCTION)
    connection = engine.cluster.connection()
    try:
        await post(connection, {"name": "bench.wait.start", "data": {"key": f"{prefix}-first"}})
        await _until_waiting(engine, scope, 1)
        await post(connection, {"name": "bench.wait.done", "data": {"key": f"{prefix}-first"}})
        await engine.observer.wait_finished(scope, 1, within=60)
    finally:
        await connection.close()


async def _until_waiting(engine: Engine, scope: Scope, expected: int) -> int:
    deadline = time.monotonic() + max(120.0, expected / 50)
    while True:
        waiting = int(
            await engine.observer.fetchval(
                "SELECT count(*) FROM reverb.runs WHERE function_id = ANY($1::text[])"
                " AND id >= $2 AND status = 'waiting'",
                *scope.arguments,
            )
        )
        if waiting >= expected:
            return waiting
        if time.monotonic() > deadline:
            raise TimeoutError(f"{waiting} of {expected} runs waiting in time")
        await asyncio.sleep(0.25)


async def _ingest(engine: Engine, requests: int, prefix: str) -> float:
    """Events/s accepted, one per request, of keys no run waits for."""
    remaining = requests

    async def client() -> None:
        nonlocal remaining
        connection = engine.cluster.connection()
        try:
            while remaining > 0:
                remaining -= 1
                key = f"{prefix}-none-{remaining}"
                await post(connection, {"name": "bench.wait.done", "data": {"key": key}})
        finally:
            await connection.close()

    began = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(CLIENTS))), timeout=300)
    return requests / (time.perf_counter() - began)


async def _resume(
    engine: Engine, scope: Scope, prefix: str, count: int, rate: float
) -> dict[str, list[float]]:
    """Per hop of each resumed run's way back, its samples (ms); "total" from the send."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put_nowait(engine.cluster.connection())
    sent: dict[str, float] = {}

    async def send(index: int) -> None:
        connection = await pool.get()
        try:
            began = time.time()
            await post(
                connection, {"name": "bench.wait.done", "data": {"key": f"{prefix}-{index}"}}
            )
            sent[f"{prefix}-{index}"] = began
        finally:
            pool.put_nowait(connection)

    tasks = []
    origin = time.monotonic()
    for index in range(count):
        pause = origin + index / rate - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        tasks.append(asyncio.create_task(send(index)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    while not pool.empty():
        await pool.get_nowait().close()
    await engine.observer.wait_finished(scope, count, within=120)
    rows = await engine.observer.fetch(_RESUMED, *scope.arguments)
    hops: dict[str, list[float]] = {name: [] for name in HOPS}
    for row in rows:
        began = sent.get(row["key"])
        if began is None:
            continue
        marks = [began, *(float(row[mark]) for mark in ("stored", "resolved", "resumed"))]
        for name, start, end in zip(HOPS, marks, marks[1:], strict=False):
            hops[name].append((end - start) * 1000)
    return hops


# Per resumed run: its awaited event's acceptance, the wait step's resolution (the
# match_waits transaction's time) and the next step's start.
_RESUMED = """
SELECT wait.output -> 'event' -> 'data' ->> 'key' AS key,
       extract(epoch FROM awaited.received_at) AS stored,
       extract(epoch FROM wait.ended_at) AS resolved,
       extract(epoch FROM after.started_at) AS resumed
FROM reverb.runs AS run
JOIN reverb.steps AS wait ON wait.run_id = run.id AND wait.id = 'wait'
JOIN reverb.events AS awaited ON awaited.id = wait.output -> 'event' ->> 'id'
JOIN reverb.steps AS after ON after.run_id = run.id AND after.id = 'after'
WHERE run.function_id = ANY($1::text[]) AND run.id >= $2
"""
HOPS = (
    "p50 hop: send→event stored",
    "p50 hop: event→wait resolved (match_waits job)",
    "p50 hop: resolved→next step started",
)
