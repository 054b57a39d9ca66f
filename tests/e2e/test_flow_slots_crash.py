"""kill -9 a worker while its runs hold concurrency slots: after the heartbeat timeout
another worker takes the runs over (keeping their slots), every run completes, no run is
lost, and the limit held throughout (from the steps' own timestamps)."""

from pathlib import Path

import pytest

from tests.e2e.apps import slots
from tests.e2e.processes import Service, eventually, free_port
from tests.e2e.test_crash_safety import Mesh, mesh, running  # noqa: F401 (fixtures)
from tests.integration.flow import most_at_once

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

APP = str(Path(slots.__file__))
RUNS = 6


async def test_slots_held_by_a_killed_worker_come_back_and_no_run_is_lost(
    mesh: Mesh,  # noqa: F811 (the crash tests' fixture)
    tmp_path: Path,
    running: list[Service],  # noqa: F811
) -> None:
    release = tmp_path / "release"
    host = mesh.service(
        "host",
        "host",
        APP,
        REVERB_HOST_ADDRESS=f"127.0.0.1:{free_port()}",
        REVERB_TEST_RELEASE=str(release),
    )
    running.append(host.start())
    await mesh.registered(host)
    doomed = mesh.worker("doomed")
    running.append(doomed.start())
    response = await mesh.http.post(
        "/events", json=[{"name": "slots.test", "data": {"n": n}} for n in range(RUNS)]
    )
    assert response.status_code == 202, response.text

    async def slots_taken() -> bool:
        taken = await mesh.database.fetchval("SELECT count(*) FROM reverb.concurrency_slots")
        queued = await mesh.database.fetchval("SELECT count(*) FROM reverb.concurrency_queue")
        return bool(taken == slots.LIMIT and queued == RUNS - slots.LIMIT)

    await eventually(slots_taken, within=30, what="two runs to hold the slots, four held")
    doomed.kill()
    survivor = mesh.worker("survivor")
    running.append(survivor.start())
    release.touch()

    async def all_completed() -> bool:
        done = await mesh.database.fetchval(
            "SELECT count(*) FROM reverb.runs WHERE function_id = 'slotted'"
            " AND status = 'completed'"
        )
        return bool(done == RUNS)

    await eventually(all_completed, within=60, what="every run to complete")
    outputs = await mesh.database.fetch(
        "SELECT output::text AS output FROM reverb.runs WHERE function_id = 'slotted'"
    )
    assert sorted(int(row["output"]) for row in outputs) == list(range(RUNS))
    steps = await mesh.database.fetch(
        "SELECT s.started_at, s.ended_at FROM reverb.steps s"
        " JOIN reverb.runs r ON r.id = s.run_id WHERE r.function_id = 'slotted'"
    )
    assert len(steps) == RUNS
    assert most_at_once([(row["started_at"], row["ended_at"]) for row in steps]) <= slots.LIMIT
    assert await mesh.database.fetchval("SELECT count(*) FROM reverb.concurrency_slots") == 0
    assert await mesh.database.fetchval("SELECT count(*) FROM reverb.concurrency_queue") == 0
