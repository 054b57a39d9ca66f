"""One benchmark run: databases, peers' installs, the engine, interleaved groups of probes."""

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import structlog

from bench import database, floor
from bench.config import Sizes
from bench.engine import probes as engine_probes
from bench.engine import profile, scaling, signing, traces, user_logs
from bench.engine.cluster import ClusterError
from bench.engine.session import Engine
from bench.peers import probes as peer_probes
from bench.peers.setup import SetupError, dbos_python, graphile_node
from bench.results import Results
from bench.runner import Probe, run_interleaved

log = structlog.get_logger("bench")

T = TypeVar("T")

SECTIONS = (
    "ingest",
    "latency",
    "throughput",
    "signing",
    "traces",
    "logs",
    "sleep",
    "fanout",
    "cancel",
    "waits",
    "flow",
    "cron",
    "jobs",
    "floor",
    "scaling",
)
# Sections measured unless --only names others; scaling is opt-in (it takes long).
DEFAULT_SECTIONS = SECTIONS[:-1]


@dataclass(frozen=True, slots=True)
class Options:
    sizes: Sizes
    # The maintenance URL of the PostgreSQL server every system gets a database on.
    server: str
    sections: frozenset[str] = frozenset(DEFAULT_SECTIONS)
    peers: bool = True
    engine: bool = True
    keep_databases: bool = False
    # One extra step-throughput run under py-spy (bench/results/profiles/).
    profile: bool = False
    # Seconds any one group of interleaved probes may start new repetitions for.
    group_budget: float = 1800.0


@dataclass
class Systems:
    """What could be started for this run; None (with a note in the results) if not."""

    engine: Engine | None = None
    # The `signing` section's engine, whose worker→host calls are not signed.
    unsigned: Engine | None = None
    # The `traces` section's engine, exporting its spans over OTLP.
    traced: traces.Traced | None = None
    # The `logs` section's engines: log sink off, and MongoDB.
    logs: user_logs.LogEngines | None = None
    urls: dict[str, str] = field(default_factory=dict)
    dbos: Path | None = None
    node: str | None = None


async def _install_peers(found: Systems, results: Results) -> None:
    async def dbos() -> None:
        try:
            found.dbos = await dbos_python()
        except SetupError as error:
            results.miss("peers", "DBOS", f"not installed: {error}")

    async def graphile() -> None:
        try:
            found.node = await graphile_node()
        except SetupError as error:
            results.miss("peers", "Graphile Worker", f"not installed: {error}")

    await asyncio.gather(dbos(), graphile())


@asynccontextmanager
async def systems(options: Options, results: Results) -> AsyncIterator[Systems]:
    server = options.server
    # The process id keeps two runs on one server (a developer's and CI's) apart.
    names = {
        system: f"reverb_bench_{os.getpid()}_{system}"
        for system in (
            "reverb",
            "unsigned",
            "traced",
            "logs_off",
            "logs_mongodb",
            "floor",
            "pgqueuer",
            "dbos",
            "graphile",
        )
    }
    found = Systems()
    for system, name in names.items():
        found.urls[system] = await database.create(server, name)
    try:
        if options.peers:
            await _install_peers(found, results)
        if options.engine:
            try:
                found.engine = await Engine.start(found.urls["reverb"])
            except (ClusterError, OSError, TimeoutError) as error:
                results.miss("all", "Reverb", f"engine did not start: {error}")
        async with contextlib.AsyncExitStack() as stack:
            if options.engine and found.engine is not None:
                await _section_engines(stack, options.sections, found, results)
            yield found
    finally:
        if found.engine is not None:
            await found.engine.stop()
        if not options.keep_databases:
            for name in names.values():
                await database.drop(server, name)


async def _section_engines(
    stack: contextlib.AsyncExitStack, sections: frozenset[str], found: Systems, results: Results
) -> None:
    """The engines some sections compare the run's engine with, each on a database of its
    own (noted, and the section left out, if one cannot start)."""
    if "signing" in sections:
        found.unsigned = await _started(
            stack,
            signing.unsigned_engine(found.urls["unsigned"]),
            results,
            "signing",
            signing.UNSIGNED,
        )
    if "traces" in sections:
        found.traced = await _started(
            stack, traces.traced_engine(found.urls["traced"]), results, "traces", traces.ON
        )
    if "logs" in sections:
        found.logs = await _log_engines(stack, found.urls, results)


async def _started(
    stack: contextlib.AsyncExitStack,
    engine: contextlib.AbstractAsyncContextManager[T],
    results: Results,
    section: str,
    system: str,
) -> T | None:
    """`engine` entered on `stack`; None, noted for `section`, if it did not start."""
    try:
        return await stack.enter_async_context(engine)
    except (ClusterError, OSError, TimeoutError) as error:
        results.miss(section, system, f"engine did not start: {error}")
        return None


async def _log_engines(
    stack: contextlib.AsyncExitStack, urls: dict[str, str], results: Results
) -> user_logs.LogEngines | None:
    """The `logs` section's engines (None, noted, if the sink-off one cannot start)."""
    try:
        off = await stack.enter_async_context(user_logs.sink_off_engine(urls["logs_off"]))
    except (ClusterError, OSError, TimeoutError) as error:
        results.miss("logs", user_logs.OFF, f"engine did not start: {error}")
        return None
    mongodb: Engine | None = None
    try:
        mongodb = await stack.enter_async_context(user_logs.mongodb_engine(urls["logs_mongodb"]))
    except Exception as error:  # no nx-27017, or it did not answer: the others go on
        results.miss("logs", user_logs.MONGODB, f"engine did not start: {error!r}"[:300])
    return user_logs.LogEngines(off, mongodb)


def groups(options: Options, found: Systems) -> list[tuple[str, list[Probe]]]:
    """The groups of compared probes, in the order they run; each group is interleaved."""
    sizes, engine, urls = options.sizes, found.engine, found.urls
    want = options.sections
    pgqueuer = peer_probes.pgqueuer(urls["pgqueuer"], sizes) if options.peers else None
    graphile = peer_probes.graphile(found.node, urls["graphile"], sizes) if found.node else None
    dbos = peer_probes.dbos(found.dbos, urls["dbos"], sizes) if found.dbos else None
    chosen: list[tuple[str, list[Probe]]] = []

    def add(section: str, *probes: Probe | None) -> None:
        present = [probe for probe in probes if probe is not None]
        if section in want and present:
            chosen.append((section, present))

    add(
        "throughput",
        engine_probes.throughput_probe(engine, sizes) if engine else None,
        dbos[0] if dbos else None,
        *(floor.probes(urls["floor"], sizes.pgbench_seconds) if "floor" in want else []),
    )
    if "throughput" not in want:
        add("floor", *floor.probes(urls["floor"], sizes.pgbench_seconds))
    add(
        "latency",
        engine_probes.latency_probe(engine, sizes) if engine else None,
        pgqueuer[1] if pgqueuer else None,
        dbos[1] if dbos else None,
        graphile[1] if graphile else None,
    )
    add("jobs", pgqueuer[0] if pgqueuer else None, graphile[0] if graphile else None)
    if engine and found.unsigned is not None:
        add("signing", *signing.probes(engine, found.unsigned, sizes))
    if engine and found.traced is not None:
        add("traces", *traces.probes(engine, found.traced, sizes))
    if engine and found.logs is not None:
        add("logs", *user_logs.probes(engine, found.logs, sizes))
    if engine:
        add("ingest", *engine_probes.ingest_probes(engine, sizes))
        add("fanout", engine_probes.fanout_probe(engine, sizes))
        add("cron", engine_probes.cron_probe(engine))
        add("sleep", engine_probes.sleep_probe(engine, sizes))
        add("cancel", engine_probes.cancel_probe(engine, sizes))
        add("waits", engine_probes.waits_probe(engine, sizes))
        add("flow", engine_probes.flow_probe(engine, sizes))
        add("scaling", *scaling.probes(engine, sizes))
    return chosen


async def run(options: Options, results: Results) -> None:
    async with systems(options, results) as found:
        if "floor" in options.sections:
            await floor.prepare(found.urls["floor"])
            if floor.pgbench_path() is None:
                results.miss(
                    "PostgreSQL floor",
                    "pgbench",
                    "pgbench not found (apt-get install postgresql-client)",
                )
        chosen = groups(options, found)
        for name, probes in chosen:
            if floor.pgbench_path() is None:
                probes = [probe for probe in probes if probe.system != "pgbench"]
            log.info("group", name=name, systems=[probe.system for probe in probes])
            deadline = time.monotonic() + options.group_budget
            await run_interleaved(probes, options.sizes.repetitions, results, deadline)
        if options.profile and found.engine is not None:
            try:
                written = await profile.run(found.engine, options.sizes)
            except (RuntimeError, OSError, TimeoutError) as error:
                results.notes.append(f"profile: not recorded ({error})")
            else:
                results.notes.extend(f"profile: {path}" for path in written)


def selected(names: Sequence[str] | None) -> frozenset[str]:
    if not names:
        return frozenset(DEFAULT_SECTIONS)
    unknown = set(names) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    return frozenset(names)
