"""Reverb's measurements as probes for the runner."""

from bench.config import Sizes
from bench.engine import (
    cancel,
    cost,
    cron,
    fanout,
    flow,
    ingest,
    latency,
    sleep,
    throughput,
    waits,
    webhooks,
)
from bench.engine.session import Engine
from bench.latency import units
from bench.runner import Probe

SYSTEM = "Reverb"


def ingest_probes(engine: Engine, sizes: Sizes) -> list[Probe]:
    async def single() -> dict[str, float]:
        return await ingest.single(engine, sizes.ingest_requests, sizes.ingest_clients)

    async def batched() -> dict[str, float]:
        return await ingest.batched(
            engine, sizes.batch_requests, sizes.batch_clients, sizes.batch_size
        )

    async def verified_webhooks() -> dict[str, float]:
        return await webhooks.single(engine, sizes.ingest_requests, sizes.ingest_clients)

    return [
        Probe(
            "Ingest",
            SYSTEM,
            single,
            {"events/s, 1 per request": "events/s", **cost.units("event")},
        ),
        Probe("Ingest", SYSTEM, batched, {f"events/s, {sizes.batch_size} per request": "events/s"}),
        Probe(
            "Ingest",
            SYSTEM,
            verified_webhooks,
            {webhooks.FIGURE: "requests/s", **cost.units("webhook")},
        ),
    ]


def latency_probe(engine: Engine, sizes: Sizes) -> Probe:
    async def measure() -> dict[str, float]:
        return await latency.measure(engine, sizes.latency_rate, sizes.latency_seconds)

    figures = {
        **units("request→first step", "request→completed"),
        **dict.fromkeys(latency.HOPS, "ms"),
    }
    return Probe("Latency", SYSTEM, measure, figures)


def throughput_probe(engine: Engine, sizes: Sizes) -> Probe:
    async def measure() -> dict[str, float]:
        return await throughput.measure(engine, sizes.throughput_runs, sizes.throughput_steps)

    return Probe(
        "Step throughput",
        SYSTEM,
        measure,
        {
            "steps/s": "steps/s",
            "runs/s": "runs/s",
            "invocations/run": "",
            "commits/step": "",
            **cost.units("step"),
        },
        timeout=900,
    )


def sleep_probe(engine: Engine, sizes: Sizes) -> Probe:
    async def measure() -> dict[str, float]:
        return await sleep.measure(engine, sizes.sleep_runs, sizes.sleep_seconds)

    return Probe("Sleep", SYSTEM, measure, sleep.UNITS, timeout=900)


def fanout_probe(engine: Engine, sizes: Sizes) -> Probe:
    async def measure() -> dict[str, float]:
        return await fanout.measure(engine, sizes.fanout_functions)

    return Probe("Fan-out", SYSTEM, measure, {f"all {sizes.fanout_functions} runs completed": "ms"})


def cancel_probe(engine: Engine, sizes: Sizes) -> Probe:
    async def measure() -> dict[str, float]:
        return await cancel.measure(engine, sizes.cancel_runs)

    return Probe("Bulk cancel", SYSTEM, measure, cancel.UNITS, timeout=900)


def waits_probe(engine: Engine, sizes: Sizes) -> Probe:
    async def measure() -> dict[str, float]:
        return await waits.measure(
            engine, sizes.waits_runs, sizes.ingest_requests, sizes.waits_resumed, sizes.waits_rate
        )

    return Probe("Waits", SYSTEM, measure, waits.FIGURES, timeout=900)


def flow_probe(engine: Engine, sizes: Sizes) -> Probe:
    async def measure() -> dict[str, float]:
        return await flow.measure(
            engine, sizes.throughput_runs, sizes.throughput_steps, sizes.handoff_runs
        )

    return Probe("Flow control", SYSTEM, measure, flow.UNITS, timeout=1800)


def cron_probe(engine: Engine) -> Probe:
    async def measure() -> dict[str, float]:
        return await cron.measure(engine)

    return Probe("Cron", SYSTEM, measure, units(cron.FIGURE))
