"""The `traces` section: step throughput with OTLP export of every service's spans to a local
receiver, against the same benchmark with export off, in the same run (issue 12: at least
75%).

The export-on engine is a second cluster on a database of its own, with
`OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a gRPC OTLP receiver (Jaeger's default
protocol) in a process of its own on the same machine (`otlp_receiver`), the batch
processor at its defaults. The receiver's CPU per step is reported beside the engine's:
it shares the engine's cores, as a local Jaeger would. The runner interleaves the two
probes' repetitions, so both see the same machine load.
"""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bench.config import Sizes
from bench.engine import cost, throughput
from bench.engine.otlp_receiver import ReceiverProcess, receiver_process
from bench.engine.session import Engine
from bench.runner import Probe

SECTION = "Step throughput, OTLP export"
OFF = "Reverb, export off"
RECEIVER_CPU = "receiver CPU/step"
ON = "Reverb, OTLP export on"


@dataclass
class Traced:
    engine: Engine
    receiver: ReceiverProcess


@contextlib.asynccontextmanager
async def traced_engine(database_url: str) -> AsyncIterator[Traced]:
    """An engine exporting its spans over OTLP/gRPC to a receiver process."""
    async with receiver_process() as receiver:
        engine = await Engine.start(
            database_url,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
        )
        try:
            yield Traced(engine, receiver)
        finally:
            await engine.stop()


def probes(plain: Engine, traced: Traced, sizes: Sizes) -> list[Probe]:
    figures = {"steps/s": "steps/s", **cost.units("step")}

    async def off() -> dict[str, float]:
        measured = await throughput.measure(plain, sizes.throughput_runs, sizes.throughput_steps)
        return {name: measured[name] for name in figures}

    async def on() -> dict[str, float]:
        receiver = traced.receiver
        before = await receiver.spans()
        cpu_before = receiver.cpu_seconds()
        measured = await throughput.measure(
            traced.engine, sizes.throughput_runs, sizes.throughput_steps
        )
        steps = sizes.throughput_runs * sizes.throughput_steps
        # Spans the receiver had by the last run's end (the batch processor sends every
        # 5 s by default: a few may come later), per step: proof that export is on; and
        # the receiver's CPU until then (what came later is counted in the next one).
        received = (await receiver.spans() - before) / steps
        receiver_cpu = (receiver.cpu_seconds() - cpu_before) / steps * 1e6
        return {
            **{name: measured[name] for name in figures},
            "spans received/step": received,
            RECEIVER_CPU: receiver_cpu,
        }

    return [
        Probe(SECTION, OFF, off, figures, timeout=900),
        Probe(
            SECTION, ON, on, {**figures, "spans received/step": "", RECEIVER_CPU: "µs"}, timeout=900
        ),
    ]
