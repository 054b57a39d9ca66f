"""The `logs` section: step throughput with one `ctx.logger` line per step written to a log
sink, against the 10-step benchmark with the sink off, in the same run (issue 12: with the
PostgreSQL sink at least 85% of the rate with the sink off; MongoDB's figure reported).

The engine of the run (the default sink, PostgreSQL) runs the logged benchmark; a second
engine with `REVERB_LOG_SINK=none` runs the plain benchmark and the logged one (whose
worker asks the host for no lines, `Start.omit_log_lines`: a `ctx.logger` call that records
nothing);
a third writes to MongoDB on nx-27017's in-memory wire-protocol server, on the same cores.
The runner interleaves the probes' repetitions, so all see the same machine load.
"""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bench.config import Sizes
from bench.engine import cost, throughput
from bench.engine.session import Engine
from bench.runner import Probe
from tests import mongo

SECTION = "Step throughput, user logs"
OFF = "Reverb, log sink off"
OFF_LOGGED = "Reverb, log sink off, 1 log line/step"
POSTGRES = "Reverb, PostgreSQL sink, 1 log line/step"
MONGODB = "Reverb, MongoDB sink (nx-27017), 1 log line/step"
LOGGED = "bench-steps-logged"
LOGGED_EVENT = "bench.steps-logged"


@dataclass
class LogEngines:
    off: Engine
    mongodb: Engine | None


@contextlib.asynccontextmanager
async def sink_off_engine(database_url: str) -> AsyncIterator[Engine]:
    engine = await Engine.start(database_url, {"REVERB_LOG_SINK": "none"})
    try:
        yield engine
    finally:
        await engine.stop()


@contextlib.asynccontextmanager
async def mongodb_engine(database_url: str) -> AsyncIterator[Engine]:
    """An engine whose worker writes its log documents to nx-27017 (or
    REVERB_TEST_MONGODB_URL), started for the section."""
    with mongo.server_url() as url:
        engine = await Engine.start(
            database_url,
            {
                "REVERB_LOG_SINK": "mongodb",
                "REVERB_MONGODB_URL": url,
                "REVERB_MONGODB_DATABASE": "reverb_bench",
            },
        )
        try:
            yield engine
        finally:
            await engine.stop()


def probes(engine: Engine, others: LogEngines, sizes: Sizes) -> list[Probe]:
    figures = {"steps/s": "steps/s", **cost.units("step")}

    def probe(system: str, measured: Engine, function: str, event_name: str) -> Probe:
        async def measure() -> dict[str, float]:
            found = await throughput.measure(
                measured,
                sizes.throughput_runs,
                sizes.throughput_steps,
                function=function,
                event_name=event_name,
            )
            return {name: found[name] for name in figures}

        return Probe(SECTION, system, measure, figures, timeout=900)

    chosen = [
        probe(OFF, others.off, throughput.FUNCTION, "bench.steps"),
        probe(OFF_LOGGED, others.off, LOGGED, LOGGED_EVENT),
        probe(POSTGRES, engine, LOGGED, LOGGED_EVENT),
    ]
    if others.mongodb is not None:
        chosen.append(probe(MONGODB, others.mongodb, LOGGED, LOGGED_EVENT))
    return chosen
