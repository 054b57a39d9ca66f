"""How cost grows: steps per run, payload size per step, and the number of sleeping runs.

Each variant is one probe (interleaved with the others); throughput variants
keep the total number of steps fixed so that they do the same amount of work.
Opt-in: `python -m bench --only scaling`.
"""

from collections.abc import Awaitable, Callable, Mapping

from bench.config import Sizes
from bench.engine import sleep, throughput
from bench.engine.session import Engine
from bench.runner import Probe

SECTION = "Scaling"
STEPS_PER_RUN = (1, 10, 50)
PAYLOAD_BYTES = (1_024, 16_384, 131_072)
# With the Sleep section's 10,000 sleepers, a third point.
SLEEPERS = (1_000, 3_000)
# Steps per variant (the full run's step-throughput test does 20,000).
TOTAL_STEPS = 5_000
_KEPT = ("steps/s", "commits/step", "total CPU/step")


def _probe(
    label: str, measure: Callable[[], Awaitable[Mapping[str, float]]], units: dict[str, str]
) -> Probe:
    async def labelled() -> dict[str, float]:
        values = await measure()
        return {f"{label}: {name}": value for name, value in values.items() if name in units}

    return Probe(
        SECTION, "Reverb", labelled, {f"{label}: {name}": unit for name, unit in units.items()}, 900
    )


def probes(engine: Engine, sizes: Sizes) -> list[Probe]:
    total_steps = min(TOTAL_STEPS, sizes.throughput_runs * sizes.throughput_steps)
    units = {"steps/s": "steps/s", "commits/step": "", "total CPU/step": "µs"}
    found = []
    for steps in STEPS_PER_RUN:

        async def by_steps(steps: int = steps) -> dict[str, float]:
            return await throughput.measure(engine, max(1, total_steps // steps), steps)

        found.append(_probe(f"{steps} steps/run", by_steps, units))
    for payload in PAYLOAD_BYTES:

        async def by_payload(payload: int = payload) -> dict[str, float]:
            runs = max(1, total_steps // 10)
            return await throughput.measure(engine, runs, 10, payload)

        found.append(_probe(f"{payload // 1024} KiB/step", by_payload, units))
    sleep_units = {
        "wake lateness p50": "ms",
        "wake lateness p99": "ms",
        "worker RSS per sleeping run": "KiB",
        "host RSS per sleeping run": "KiB",
    }
    for sleepers in SLEEPERS:

        async def by_sleepers(sleepers: int = sleepers) -> dict[str, float]:
            return await sleep.measure(engine, sleepers, sizes.sleep_seconds)

        found.append(_probe(f"{sleepers:,} sleepers", by_sleepers, sleep_units))
    return found
