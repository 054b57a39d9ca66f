"""The `signing` section: step throughput with every worker→host call signed (the engine's
default: each Start and each host frame carries an HMAC over its bytes, issue 8), against
the same benchmark on an engine whose calls are not signed, in the same run.

What it prices is the signing alone: the unsigned engine is the same three services with
no `REVERB_SIGNING_KEY` and `REVERB_HOST_INSECURE=true` (its worker sends plain Starts and
its host answers with plain frames), on a database of its own. The runner interleaves the
two probes' repetitions, so both see the same machine load. Issue 8 may cost the step rate
at most 5% (the project's rule for every issue): signed ≥ 95% of unsigned.
"""

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from bench.config import Sizes
from bench.engine import cost, throughput
from bench.engine.session import Engine
from bench.runner import Probe

SECTION = "Step throughput, signed calls"
UNSIGNED = "Reverb, unsigned"
SIGNED = "Reverb, signed (default)"


@contextlib.asynccontextmanager
async def unsigned_engine(database_url: str) -> AsyncIterator[Engine]:
    """An engine whose worker→host calls are not signed."""
    engine = await Engine.start(
        database_url, {"REVERB_SIGNING_KEY": None, "REVERB_HOST_INSECURE": "true"}
    )
    try:
        yield engine
    finally:
        await engine.stop()


def probes(signed: Engine, unsigned: Engine, sizes: Sizes) -> list[Probe]:
    figures = {"steps/s": "steps/s", **cost.units("step")}

    def measure(engine: Engine) -> Callable[[], Awaitable[Mapping[str, float]]]:
        async def run() -> dict[str, float]:
            measured = await throughput.measure(
                engine, sizes.throughput_runs, sizes.throughput_steps
            )
            return {name: measured[name] for name in figures}

        return run

    return [
        Probe(SECTION, UNSIGNED, measure(unsigned), figures, timeout=900),
        Probe(SECTION, SIGNED, measure(signed), figures, timeout=900),
    ]
