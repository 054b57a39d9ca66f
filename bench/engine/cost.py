"""CPU time per step, by process: where the cost of a step goes.

The gateway, worker and host are sampled with their descendants; PostgreSQL is
the sum of the server backends connected to the bench database (the engine's
pools, which live for the whole run) and so leaves out the WAL writer and the
checkpointer.
"""

from dataclasses import dataclass

from bench import usage
from bench.engine.session import Engine

SERVICES = ("gateway", "worker", "host")


@dataclass(frozen=True, slots=True)
class Snapshot:
    seconds: dict[str, float]
    backends: frozenset[int]


async def _backends(engine: Engine) -> frozenset[int]:
    rows = await engine.observer.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()"
    )
    return frozenset(int(row["pid"]) for row in rows)


async def snapshot(engine: Engine, known: frozenset[int] = frozenset()) -> Snapshot:
    backends = await _backends(engine) | known
    seconds = {name: usage.cpu_seconds([engine.cluster.processes[name].pid]) for name in SERVICES}
    seconds["postgres"] = usage.cpu_seconds(backends, children=False)
    return Snapshot(seconds, backends)


async def per(engine: Engine, before: Snapshot, count: int, unit: str) -> dict[str, float]:
    """Microseconds of CPU per `unit` ("step", "event") in each process since `before`."""
    after = await snapshot(engine, before.backends)
    # Backends that connected during the measurement started from zero.
    started = after.seconds["postgres"] - before.seconds["postgres"]
    figures = {
        f"{name} CPU/{unit}": (after.seconds[name] - before.seconds[name]) / count * 1e6
        for name in SERVICES
    }
    figures[f"PostgreSQL CPU/{unit}"] = started / count * 1e6
    figures[f"total CPU/{unit}"] = sum(figures.values())
    return figures


def units(unit: str) -> dict[str, str]:
    names = [*SERVICES, "PostgreSQL", "total"]
    return {f"{name} CPU/{unit}": "µs" for name in names}
