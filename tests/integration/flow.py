"""A mesh for flow-control scenarios: a gateway, a host that registers its app through
it (so flow options take the real path: SDK → RegisterApp → functions.flow), and two
workers with the flow gates, on the test's database."""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import httpx

import reverb
from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_ingress_gateway import Gateway, GatewaySettings
from reverb_ingress_gateway import start as start_gateway
from reverb_queue_worker import Worker
from reverb_queue_worker import start as start_worker
from reverb_store.flow.gates import flow_gates
from tests.e2e.processes import eventually
from tests.integration.test_worker_runs import host_settings, worker_settings


@dataclass
class FlowMesh:
    connection: asyncpg.Connection
    gateway: Gateway
    host: Host
    workers: list[Worker]
    http: httpx.AsyncClient

    async def send(self, name: str, data: Sequence[object]) -> list[str]:
        """Send one event per item of `data` in one request; their ids, in order."""
        response = await self.http.post("/events", json=[{"name": name, "data": d} for d in data])
        assert response.status_code == 202, response.text
        ids: list[str] = response.json()["ids"]
        return ids

    async def run_of(self, event_id: str, within: float = 20) -> str:
        """The id of the run the event started, once its fan-out has created it."""

        async def created() -> bool:
            return bool(await self._run_of(event_id))

        await eventually(created, within=within, what=f"the run of event {event_id}")
        run_id = await self._run_of(event_id)
        assert run_id is not None
        return run_id

    async def _run_of(self, event_id: str) -> str | None:
        found: str | None = await self.connection.fetchval(
            "SELECT id FROM reverb.runs WHERE $1 = ANY(event_ids) LIMIT 1", event_id
        )
        return found

    async def runs(self, function_id: str) -> list[asyncpg.Record]:
        return await self.connection.fetch(
            "SELECT * FROM reverb.runs WHERE function_id = $1 ORDER BY id", function_id
        )

    async def all_ended(self, function_id: str, count: int, within: float = 60) -> None:
        async def ended() -> bool:
            done = await self.connection.fetchval(
                "SELECT count(*) FROM reverb.runs WHERE function_id = $1"
                " AND status IN ('completed', 'failed', 'cancelled')",
                function_id,
            )
            return bool(done == count)

        await eventually(ended, within=within, what=f"{count} runs of {function_id} to end")

    async def step_intervals(self, function_id: str) -> list[tuple[datetime, datetime]]:
        rows = await self.connection.fetch(
            "SELECT s.started_at, s.ended_at FROM reverb.steps s"
            " JOIN reverb.runs r ON r.id = s.run_id WHERE r.function_id = $1",
            function_id,
        )
        return [(row["started_at"], row["ended_at"]) for row in rows]


def most_at_once(intervals: Sequence[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals that overlap (an end before a start at one time)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, change in edges:
        current += change
        most = max(most, current)
    return most


@asynccontextmanager
async def flow_mesh(
    database_url: str, connection: asyncpg.Connection, app: reverb.App, workers: int = 2
) -> AsyncIterator[FlowMesh]:
    gateway = await start_gateway(
        GatewaySettings(
            database_url=database_url,
            http_address="127.0.0.1:0",
            ingress_address="127.0.0.1:0",
            dev=True,
        )
    )
    host = await start_host(app, host_settings(ingress_address=f"127.0.0.1:{gateway.grpc_port}"))
    running: list[Worker] = []
    try:
        await host.registered.wait()
        for _ in range(workers):
            running.append(await start_worker(worker_settings(database_url), flow_gates()))
        url = f"http://127.0.0.1:{gateway.http_port}"
        async with httpx.AsyncClient(base_url=url) as http:
            yield FlowMesh(connection, gateway, host, running, http)
    finally:
        for worker in running:
            await worker.stop()
        await host.stop(0)
        await gateway.stop()
