"""A deployment for the arrival scenarios (debounce, idempotency, singleton, batch).

Real parts: a gateway in dev mode on free ports, a function host that registers its app
through it (so the options travel SDK → RegisterApp → PostgreSQL), two workers, HTTP.
A window or a batch of an hour ends when the test moves its end to now and wakes its run
(the clock the test drives).
"""

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson

import reverb
from reverb_function_host import Host, HostSettings
from reverb_function_host import start as start_host
from reverb_ingress_gateway import Gateway
from reverb_queue_worker import Worker
from reverb_queue_worker import start as start_worker
from reverb_store import jobs
from reverb_store.flow.gates import flow_gates
from tests.e2e.processes import eventually
from tests.integration.test_cli import run_cli
from tests.integration.test_worker_runs import SIGNING_KEY, worker_settings


@dataclass
class Deployment:
    connection: asyncpg.Connection
    http: httpx.AsyncClient
    workers: list[Worker]

    async def send(self, name: str, data: object, id: str | None = None) -> str:
        event: dict[str, Any] = {"name": name, "data": data}
        if id is not None:
            event["id"] = id
        answer = await self.http.post("/events", json=event)
        assert answer.status_code == 202, answer.text
        ids: list[str] = answer.json()["ids"]
        return ids[0]

    async def runs(self, function_id: str) -> list[asyncpg.Record]:
        return await self.connection.fetch(
            "SELECT * FROM reverb.runs WHERE function_id = $1 ORDER BY id", function_id
        )

    async def skipped(self, event_id: str) -> list[tuple[str, str]]:
        """The functions `GET /events/{id}` lists as skipped for the event, with why."""
        answer = await self.http.get(f"/events/{event_id}")
        assert answer.status_code == 200, answer.text
        return [(skip["function_id"], skip["reason"]) for skip in answer.json()["skipped"]]

    async def until_skipped(self, event_id: str) -> list[tuple[str, str]]:
        """The event's skips, once it has one."""

        async def skipped() -> bool:
            return bool(await self.skipped(event_id))

        await eventually(skipped, within=20, what=f"{event_id} to be skipped")
        return await self.skipped(event_id)

    async def until(self, check: Callable[[], Any], what: str, within: float = 20) -> None:
        async def holds() -> bool:
            return bool(await check())

        await eventually(holds, within=within, what=what)

    async def finished(self, function_id: str, count: int = 1) -> list[asyncpg.Record]:
        async def done() -> bool:
            runs = await self.runs(function_id)
            ended = [run for run in runs if run["status"] in ("completed", "failed", "cancelled")]
            return len(ended) >= count

        await eventually(done, within=20, what=f"{count} run(s) of {function_id} to end")
        return await self.runs(function_id)

    async def jobs_of(self, run_id: str) -> int:
        count: int = await self.connection.fetchval(
            "SELECT count(*) FROM pgqueuer"
            " WHERE convert_from(payload, 'UTF8')::jsonb->>'run_id' = $1",
            run_id,
        )
        return count

    async def waiting_on(self, run_id: str) -> tuple[dict[str, Any] | None, str]:
        """What `GET /runs/{id}` says the run waits on, and the `waiting` line of `reverb
        run ID`."""
        shown = (await self.http.get(f"/runs/{run_id}")).json()
        cli = await run_cli("run", run_id, env={"REVERB_URL": str(self.http.base_url)})
        assert cli.code == 0, cli
        lines = [line for line in cli.stdout.splitlines() if line.startswith("waiting")]
        return shown["waiting_on"], "\n".join(lines)

    async def end_now(self, table: str, run_id: str) -> None:
        """The window (`debounces`) or batch (`batches`) of the run ends now: its run is woken."""
        assert table in ("debounces", "batches")
        async with self.connection.transaction():
            await self.connection.execute(
                f"UPDATE reverb.{table} SET due_at = now() WHERE run_id = $1", run_id
            )
            await jobs.enqueue(self.connection, [jobs.AdvanceRun(run_id)])


def output(run: asyncpg.Record) -> Any:
    return orjson.loads(run["output"])


async def deploy(
    app: reverb.App, gateway: Gateway, database_url: str, connection: asyncpg.Connection
) -> AsyncIterator[Deployment]:
    """Serve `app` registered through the gateway, with two workers."""
    settings = HostSettings(
        host_address="127.0.0.1:0",
        ingress_address=f"127.0.0.1:{gateway.grpc_port}",
        signing_key=SIGNING_KEY,
    )
    host: Host = await start_host(app, settings)
    workers: list[Worker] = []
    try:
        await host.registered.wait()
        workers = [
            await start_worker(worker_settings(database_url), flow_gates()) for _ in range(2)
        ]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
            yield Deployment(connection, http, workers)
    finally:
        for worker in workers:
            await worker.stop()
        await host.stop()
