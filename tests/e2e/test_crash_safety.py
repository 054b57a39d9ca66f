"""kill -9 a worker or a host in the middle of a run: the run still completes, no committed
step runs again, and every step's output is recorded exactly once."""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.e2e.apps import crash
from tests.e2e.processes import Service, eventually, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

APP = str(Path(crash.__file__))


@dataclass
class Mesh:
    env: dict[str, str]
    logs: Path
    step_log: Path
    http: httpx.AsyncClient
    database: asyncpg.Connection

    def service(self, name: str, *args: str, **env: str) -> Service:
        return Service(name, list(args), {**self.env, **env}, self.logs)

    def host(self, name: str) -> Service:
        address = f"127.0.0.1:{free_port()}"
        return self.service(name, "host", APP, REVERB_HOST_ADDRESS=address)

    def worker(self, name: str) -> Service:
        return self.service(name, "worker")

    async def registered(self, host: Service) -> None:
        address = host.env["REVERB_HOST_ADDRESS"]

        async def check() -> bool:
            found = await self.database.fetchval(
                "SELECT count(*) FROM reverb.app_hosts WHERE address = $1", address
            )
            return bool(found)

        await eventually(check, what=f"{host.name} to register")

    def step_events(self) -> list[list[str]]:
        if not self.step_log.exists():
            return []
        return [line.split() for line in self.step_log.read_text().splitlines()]

    async def step_finished(self, step: str) -> None:
        async def check() -> bool:
            return any(e[:2] == ["end", step] for e in self.step_events())

        await eventually(check, what=f"{step} to finish")

    async def start_run(self) -> str:
        response = await self.http.post("/events", json={"name": "crash.test", "data": {}})
        assert response.status_code == 202, response.text
        (event_id,) = response.json()["ids"]

        async def run_exists() -> bool:
            runs = (await self.http.get("/runs", params={"event": event_id})).json()["runs"]
            return len(runs) == 1

        await eventually(run_exists, what="the run to be created")
        runs = (await self.http.get("/runs", params={"event": event_id})).json()["runs"]
        run_id: str = runs[0]["id"]
        return run_id

    async def finished_run(self, run_id: str) -> dict[str, object]:
        async def done() -> bool:
            run = (await self.http.get(f"/runs/{run_id}")).json()
            return run["status"] in ("completed", "failed")

        await eventually(done, within=60, what="the run to finish")
        run: dict[str, object] = (await self.http.get(f"/runs/{run_id}")).json()
        return run

    async def committed_outputs(self, run_id: str) -> dict[str, str]:
        rows = await self.database.fetch(
            "SELECT id, output #>> '{}' AS output FROM reverb.steps WHERE run_id = $1", run_id
        )
        return {row["id"]: row["output"] for row in rows}


@pytest.fixture
def running() -> Iterator[list[Service]]:
    services: list[Service] = []
    yield services
    for service in services:
        service.stop()


@pytest.fixture
async def mesh(database_url: str, tmp_path: Path, running: list[Service]) -> AsyncIterator[Mesh]:
    http_port = free_port()
    env = {
        "REVERB_DATABASE_URL": database_url,
        "REVERB_DEV": "true",
        "REVERB_HTTP_ADDRESS": f"127.0.0.1:{http_port}",
        "REVERB_INGRESS_ADDRESS": f"127.0.0.1:{free_port()}",
        "REVERB_SIGNING_KEY": "crash-test-signing-key",
        "REVERB_WORKER_HEARTBEAT_TIMEOUT": "2",
        "REVERB_TEST_STEP_LOG": str(tmp_path / "steps.log"),
    }
    database = await asyncpg.connect(database_url)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
        mesh = Mesh(env, tmp_path, tmp_path / "steps.log", http, database)
        gateway = mesh.service("gateway", "gateway")
        running.append(gateway.start())

        async def healthy() -> bool:
            try:
                return (await http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(healthy, what="the gateway to answer")
        yield mesh
    await database.close()


def assert_exactly_once(
    mesh: Mesh, committed_before_kill: dict[str, str], run: dict[str, object]
) -> None:
    assert run["status"] == "completed", run
    starts: dict[str, int] = {}
    ended_with: dict[str, set[str]] = {}
    for event in mesh.step_events():
        if event[0] == "start":
            starts[event[1]] = starts.get(event[1], 0) + 1
        else:
            ended_with.setdefault(event[1], set()).add(event[2])
    # No step whose output was committed before the kill ran again.
    for step in committed_before_kill:
        assert starts[step] == 1, f"{step} ran again after it was committed"
    steps = {step["id"]: step for step in run["steps"]}  # type: ignore[attr-defined]
    assert sorted(steps) == sorted(f"step-{i}" for i in range(crash.STEPS))
    outputs = [steps[f"step-{i}"]["output"] for i in range(crash.STEPS)]
    # One output per step, the one the function saw, and it is a value the step produced.
    assert run["output"] == outputs
    for step, output in zip((f"step-{i}" for i in range(crash.STEPS)), outputs, strict=True):
        assert output in ended_with[step]
        if step in committed_before_kill:
            assert output == committed_before_kill[step]


async def test_worker_killed_mid_run(mesh: Mesh, running: list[Service]) -> None:
    host = mesh.host("host")
    running.append(host.start())
    await mesh.registered(host)
    first = mesh.worker("worker-1")
    running.append(first.start())

    run_id = await mesh.start_run()
    await mesh.step_finished("step-2")
    first.kill()
    committed = await mesh.committed_outputs(run_id)
    assert committed, "some steps were committed before the kill"

    running.append(mesh.worker("worker-2").start())
    run = await mesh.finished_run(run_id)
    assert_exactly_once(mesh, committed, run)


async def test_host_killed_mid_run(mesh: Mesh, running: list[Service]) -> None:
    first = mesh.host("host-1")
    running.append(first.start())
    await mesh.registered(first)
    running.append(mesh.worker("worker").start())

    run_id = await mesh.start_run()
    await mesh.step_finished("step-2")
    first.kill()
    committed = await mesh.committed_outputs(run_id)
    assert committed, "some steps were committed before the kill"

    second = mesh.host("host-2")
    running.append(second.start())
    run = await mesh.finished_run(run_id)
    assert_exactly_once(mesh, committed, run)
