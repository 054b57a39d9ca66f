"""Step throughput: runs of an n-step function; steps/s, runs/s, invocations and commits.

The clock runs from the first POST /events to the last run's end (runs.ended_at,
the same machine clock). Commits are the bench database's xact_commit delta from
just before the first event until every run has ended, read after the statistics
are flushed, less the observer's own queries.
"""

import asyncio
import time

from bench.engine import cost
from bench.engine.events import send_batches
from bench.engine.observe import STATS_FLUSH_SECONDS, Scope
from bench.engine.session import Engine

FUNCTION = "bench-steps"


async def measure(
    engine: Engine,
    runs: int,
    steps: int,
    payload: int = 0,
    function: str = FUNCTION,
    event_name: str = "bench.steps",
    keys: int = 0,
) -> dict[str, float]:
    """`keys`: give the runs' events `data.key` over that many values (0: none)."""
    observer = engine.observer
    await observer.drain()
    await engine.quiet_statistics()
    queries_before = observer.queries
    commits_before = await observer.commits()
    cpu_before = await cost.snapshot(engine)
    events: list[dict[str, object]] = [
        {"name": event_name, "data": {"steps": steps, "payload": payload}} for _ in range(runs)
    ]
    if keys:
        for number, sent in enumerate(events):
            sent["data"] = {"steps": steps, "payload": payload, "key": number % keys}
    connection = engine.cluster.connection()
    scope = Scope.starting_now(function)
    began = time.time()
    try:
        await send_batches(connection, events)
    finally:
        await connection.close()
    last_ended = await observer.wait_finished(scope, runs, within=max(120.0, runs * steps / 50))
    seconds = last_ended.timestamp() - began
    cpu = await cost.per(engine, cpu_before, runs * steps, "step")
    failed = await observer.failed(scope)
    invocations = await observer.invocations(scope)
    await asyncio.sleep(STATS_FLUSH_SECONDS)
    commits = await observer.commits() - commits_before - (observer.queries - queries_before)
    engine.touched()
    if failed:
        raise RuntimeError(f"{failed} of {runs} runs did not complete")
    return {
        "steps/s": runs * steps / seconds,
        "runs/s": runs / seconds,
        "invocations/run": float(invocations),
        "commits/step": commits / (runs * steps),
        **cpu,
    }
