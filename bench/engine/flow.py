"""Flow control (section `flow`): what a concurrency limit costs on the step path.

- The 10-step benchmark twice in one repetition, without a limit and under a limit that
  never binds (1,000,000): the overhead is the gated path (the slot taken in the claim's
  transaction, freed in the run's end), target at most 10% below the unlimited figure.
- Slot handoff: 1,000 one-step runs under a limit of 10. For each run after the first
  ten, the time from the latest end of another run before its step started (the end that
  freed its slot) to that start: p50 target < 5 ms. Split at the run's claim
  (`runs.started_at`, the claim transaction's start): end → claim (the wake-up reaching a
  worker) and claim → step (the claim's statements and the Invoke).
- Step throughput with 100 keys of limit 1: the 10-step function, its runs spread over
  100 keys, each key one run at a time.
"""

import bisect
import statistics

from bench.engine import throughput
from bench.engine.events import send_batches
from bench.engine.observe import Scope
from bench.engine.session import Engine

HANDOFF_LIMIT = 10
KEYS = 100

UNITS = {
    "steps/s, no limit": "steps/s",
    "steps/s, a limit that never binds": "steps/s",
    "never-binding limit overhead": "%",
    "slot handoff p50": "ms",
    "slot handoff p99": "ms",
    "slot handoff p50, end to claim": "ms",
    "slot handoff p50, claim to step": "ms",
    "steps/s, 100 keys of limit 1": "steps/s",
}

_HANDOFF = """
SELECT r.ended_at, r.started_at AS claimed_at, s.started_at
FROM reverb.runs r JOIN reverb.steps s ON s.run_id = r.id
WHERE r.function_id = ANY($1::text[]) AND r.id >= $2
"""


async def measure(engine: Engine, runs: int, steps: int, handoff_runs: int) -> dict[str, float]:
    unlimited = await throughput.measure(engine, runs, steps)
    limited = await throughput.measure(
        engine, runs, steps, function="bench-steps-limited", event_name="bench.steps-limited"
    )
    keyed = await throughput.measure(
        engine, runs, steps, function="bench-keyed", event_name="bench.keyed", keys=KEYS
    )
    p50, p99, to_claim, to_step = await _handoff(engine, handoff_runs)
    plain, gated = unlimited["steps/s"], limited["steps/s"]
    return {
        "steps/s, no limit": plain,
        "steps/s, a limit that never binds": gated,
        "never-binding limit overhead": 100 * (plain - gated) / plain,
        "slot handoff p50": p50,
        "slot handoff p99": p99,
        "slot handoff p50, end to claim": to_claim,
        "slot handoff p50, claim to step": to_step,
        "steps/s, 100 keys of limit 1": keyed["steps/s"],
    }


async def _handoff(engine: Engine, runs: int) -> tuple[float, float, float, float]:
    """p50 and p99 of the handoff; p50 of its two parts (end → claim, claim → step)."""
    observer = engine.observer
    await observer.drain()
    scope = Scope.starting_now("bench-handoff")
    connection = engine.cluster.connection()
    try:
        await send_batches(connection, [{"name": "bench.handoff", "data": {}}] * runs)
    finally:
        await connection.close()
    await observer.wait_finished(scope, runs, within=max(120.0, runs / 20))
    rows = await observer.fetch(_HANDOFF, *scope.arguments)
    engine.touched()
    ends = sorted(row["ended_at"].timestamp() for row in rows)
    starts = sorted((row["started_at"].timestamp(), row["claimed_at"].timestamp()) for row in rows)
    gaps, to_claim, to_step = [], [], []
    for start, claimed in starts[HANDOFF_LIMIT:]:
        # The latest end before this start: the run whose slot this one took.
        index = bisect.bisect_right(ends, start)
        if index:
            gaps.append((start - ends[index - 1]) * 1000)
            to_claim.append((claimed - ends[index - 1]) * 1000)
            to_step.append((start - claimed) * 1000)
    if not gaps:
        raise RuntimeError("no gated run started after another ended")
    quantiles = statistics.quantiles(gaps, n=100)
    median = statistics.median
    return median(gaps), quantiles[98], median(to_claim), median(to_step)
