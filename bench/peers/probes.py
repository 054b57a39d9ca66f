"""The peers' measurements as probes: PgQueuer raw, DBOS Transact, Graphile Worker."""

import sys
from pathlib import Path

from bench.config import Sizes
from bench.latency import percentiles, units
from bench.peers.invoke import run_json
from bench.peers.setup import DBOS, GRAPHILE
from bench.runner import Probe

JOBS = "No-op jobs"
LATENCY = "Latency"
THROUGHPUT = "Step throughput"


def pgqueuer(database_url: str, sizes: Sizes) -> tuple[Probe, Probe]:
    command = [sys.executable, "-m", "bench.peers.pgqueuer_peer"]

    async def jobs() -> dict[str, float]:
        found = await run_json([*command, "jobs", str(sizes.peer_jobs)], database_url, 180)
        return {"jobs/s": found["jobs_per_s"]}

    async def latency() -> dict[str, float]:
        arguments = [str(sizes.latency_rate), str(sizes.latency_seconds)]
        found = await run_json(
            [*command, "latency", *arguments], database_url, sizes.latency_seconds + 90
        )
        return percentiles("enqueue→start", found["start_ms"])

    return (
        Probe(JOBS, "PgQueuer", jobs, {"jobs/s": "jobs/s"}),
        Probe(LATENCY, "PgQueuer", latency, units("enqueue→start")),
    )


def graphile(node: str, database_url: str, sizes: Sizes) -> tuple[Probe, Probe]:
    script = str(GRAPHILE / "peer.mjs")

    async def jobs() -> dict[str, float]:
        found = await run_json(
            [node, script, "jobs", str(sizes.peer_jobs)], database_url, 180, GRAPHILE
        )
        return {"jobs/s": found["jobs_per_s"]}

    async def latency() -> dict[str, float]:
        arguments = [str(sizes.latency_rate), str(sizes.latency_seconds)]
        found = await run_json(
            [node, script, "latency", *arguments],
            database_url,
            sizes.latency_seconds + 90,
            GRAPHILE,
        )
        return percentiles("enqueue→start", found["start_ms"])

    return (
        Probe(JOBS, "Graphile Worker", jobs, {"jobs/s": "jobs/s"}),
        Probe(LATENCY, "Graphile Worker", latency, units("enqueue→start")),
    )


def dbos(python: Path, database_url: str, sizes: Sizes) -> tuple[Probe, Probe]:
    script = str(DBOS / "peer.py")

    async def throughput() -> dict[str, float]:
        arguments = [str(sizes.throughput_runs), str(sizes.throughput_steps)]
        found = await run_json([str(python), script, "workflow", *arguments], database_url, 900)
        return {"steps/s": found["steps_per_s"], "runs/s": found["runs_per_s"]}

    async def latency() -> dict[str, float]:
        arguments = [str(sizes.latency_rate), str(sizes.latency_seconds)]
        found = await run_json(
            [str(python), script, "latency", *arguments], database_url, sizes.latency_seconds + 120
        )
        return {
            **percentiles("enqueue→first step", found["start_ms"]),
            **percentiles("enqueue→completed", found["complete_ms"]),
        }

    return (
        Probe(THROUGHPUT, "DBOS", throughput, {"steps/s": "steps/s", "runs/s": "runs/s"}, 900),
        Probe(LATENCY, "DBOS", latency, units("enqueue→first step", "enqueue→completed")),
    )
