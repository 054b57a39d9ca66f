"""Sleep: many runs that each sleep; how late they wake, and what sleeping costs in memory.

The function is step "before", sleep "nap", step "after". Lateness is the "after"
step's start minus the nap's wake_at (falling back to the nap's start + the
duration). Resident memory (psutil RSS, with children) of the worker and the host
is sampled idle before the runs, then every 0.25 s while they run: the sample
taken when the most runs were sleeping at once is "while sleeping". "Idle" is
taken after a warm-up of the same function (a fifth of the runs, at most 2,000,
sleeping 1 s: the same load as the test), so that it includes what the worker
and host hold for the runs they drive at full concurrency: what remains is what
the sleeping runs cost.
"""

import asyncio
import time

from bench.engine.events import send_batches
from bench.engine.observe import Scope
from bench.engine.session import Engine
from bench.stats import percentile

MIB = 2**20
FUNCTION = "bench-sleep"

_LATENESS = """
SELECT extract(epoch FROM after.started_at - coalesce(
    nap.wake_at, nap.started_at + make_interval(secs => $3))) * 1000 AS late_ms
FROM reverb.runs AS run
JOIN reverb.steps AS nap ON nap.run_id = run.id AND nap.id = 'nap'
JOIN reverb.steps AS after ON after.run_id = run.id AND after.id = 'after'
WHERE run.function_id = ANY($1::text[]) AND run.id >= $2
"""


async def measure(engine: Engine, runs: int, seconds: float) -> dict[str, float]:
    observer = engine.observer
    await observer.drain()
    warm_up, warm_up_runs = Scope.starting_now(FUNCTION), min(2_000, max(runs // 5, 1))
    await _send(engine, warm_up_runs, 1.0)
    await observer.wait_finished(warm_up, warm_up_runs, within=120.0)
    idle = {name: engine.cluster.resident_memory(name) for name in ("worker", "host")}
    scope = Scope.starting_now(FUNCTION)
    await _send(engine, runs, seconds)
    most_sleeping = 0
    sleeping_memory = dict(idle)
    deadline = time.monotonic() + max(120.0, runs / 20)
    while True:
        row = (
            await observer.fetch(
                "SELECT count(*) FILTER (WHERE status = 'sleeping') AS sleeping,"
                " count(*) FILTER (WHERE status IN ('completed', 'failed')) AS ended"
                " FROM reverb.runs WHERE function_id = ANY($1::text[]) AND id >= $2",
                *scope.arguments,
            )
        )[0]
        if row["sleeping"] > most_sleeping:
            most_sleeping = row["sleeping"]
            sleeping_memory = {name: engine.cluster.resident_memory(name) for name in idle}
        if row["ended"] >= runs:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{row['ended']} of {runs} sleeping runs ended in time")
        await asyncio.sleep(0.25)
    engine.touched()
    failed = await observer.failed(scope)
    if failed:
        raise RuntimeError(f"{failed} of {runs} sleeping runs did not complete")
    late = [
        float(each["late_ms"])
        for each in await observer.fetch(_LATENESS, *scope.arguments, seconds)
    ]
    invocations = await observer.invocations(scope)
    figures = {
        "wake lateness p50": percentile(late, 0.5),
        "wake lateness p99": percentile(late, 0.99),
        "most runs asleep at once": float(most_sleeping),
        "invocations/run": float(invocations),
    }
    for name in ("worker", "host"):
        figures[f"{name} RSS idle"] = idle[name] / MIB
        figures[f"{name} RSS while sleeping"] = sleeping_memory[name] / MIB
        figures[f"{name} RSS per sleeping run"] = (
            (sleeping_memory[name] - idle[name]) / max(most_sleeping, 1) / 1024
        )
    return figures


async def _send(engine: Engine, runs: int, seconds: float) -> None:
    events = [{"name": "bench.sleep", "data": {"seconds": seconds}} for _ in range(runs)]
    connection = engine.cluster.connection()
    try:
        await send_batches(connection, events)
    finally:
        await connection.close()


UNITS = {
    "wake lateness p50": "ms",
    "wake lateness p99": "ms",
    "most runs asleep at once": "runs",
    "invocations/run": "",
    "worker RSS idle": "MiB",
    "worker RSS while sleeping": "MiB",
    "worker RSS per sleeping run": "KiB",
    "host RSS idle": "MiB",
    "host RSS while sleeping": "MiB",
    "host RSS per sleeping run": "KiB",
}
