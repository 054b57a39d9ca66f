"""A 6-field schedule (every 2 s) in real time, two workers, each killed with kill -9 in
turn (so whichever held the scheduler's job was killed): every tick gets exactly one run,
none twice and none lost (the schedule catches up every missed tick)."""

import itertools
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.apps import ticking
from tests.e2e.processes import Service, eventually, free_port
from tests.e2e.test_crash_safety import Mesh, mesh, running  # noqa: F401 (the fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

APP = str(Path(ticking.__file__))


async def ticks(mesh: Mesh) -> list[tuple[str, int]]:  # noqa: F811
    """Each tick that has an event, with its number of runs, oldest first."""
    rows = await mesh.database.fetch(
        "SELECT e.data->>'scheduled_at' AS tick, count(r.id) AS runs FROM reverb.events e"
        " LEFT JOIN reverb.runs r ON r.event_ids[1] = e.id"
        " WHERE e.name = 'reverb/cron' GROUP BY 1 ORDER BY 1"
    )
    return [(row["tick"], row["runs"]) for row in rows]


async def more_ticks(mesh: Mesh, count: int) -> None:  # noqa: F811
    before = len(await ticks(mesh))

    async def fired() -> bool:
        return len(await ticks(mesh)) >= before + count

    await eventually(fired, within=40, what=f"{count} more ticks")


async def test_one_run_per_tick_through_kill_9_of_each_worker(
    mesh: Mesh,  # noqa: F811
    running: list[Service],  # noqa: F811
) -> None:
    host = mesh.service("host", "host", APP, REVERB_HOST_ADDRESS=f"127.0.0.1:{free_port()}")
    running.append(host.start())
    await mesh.registered(host)
    workers = [mesh.worker("worker-1"), mesh.worker("worker-2")]
    for worker in workers:
        running.append(worker.start())
    await more_ticks(mesh, 2)

    for victim in workers:
        await more_ticks(mesh, 1)  # kill just after a tick fired: the next is being armed
        victim.kill()
        await more_ticks(mesh, 3)
        running.append(victim.start())

    await more_ticks(mesh, 2)
    fired = await ticks(mesh)
    for worker in workers:
        worker.stop()
    times = [datetime.fromisoformat(tick) for tick, _ in fired]
    assert all(runs == 1 for _, runs in fired), fired
    # Every 2 s from the first tick to the last: none lost while a worker was down.
    assert [later - earlier for earlier, later in itertools.pairwise(times)] == [
        timedelta(seconds=2)
    ] * (len(times) - 1), fired

    # The runs themselves survived the kills too.
    async def completed() -> bool:
        done = await mesh.database.fetchval(
            "SELECT count(*) FROM reverb.runs r JOIN reverb.events e ON e.id = r.event_ids[1]"
            " WHERE r.status = 'completed' AND e.data->>'scheduled_at' = ANY($1::text[])",
            [tick for tick, _ in fired],
        )
        return bool(done == len(fired))

    running.append(workers[0].start())
    await eventually(completed, within=60, what="the ticks' runs to complete")
