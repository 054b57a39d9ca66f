"""Two real workers on one database and one real host: the mesh of the control tests."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

import reverb
from reverb_function_host import Host
from reverb_queue_worker import Worker
from reverb_queue_worker import start as start_worker
from tests.e2e.processes import eventually
from tests.integration.test_worker_runs import Mesh, register, worker_settings


@dataclass
class Two:
    """`mesh` holds the first worker; `other` is the second."""

    mesh: Mesh
    other: Worker

    @property
    def connection(self) -> asyncpg.Connection:
        return self.mesh.connection

    async def run_id(self, event_id: str, function_id: str) -> str:
        """The id of the run of `function_id` the event triggered, once it exists."""

        async def created() -> bool:
            return await self.mesh.run_of(event_id, function_id) is not None

        await eventually(created, within=10, what=f"a run of {function_id}")
        run = await self.mesh.run_of(event_id, function_id)
        assert run is not None
        return str(run["id"])


@asynccontextmanager
async def two_workers(
    database_url: str, connection: asyncpg.Connection, served: reverb.App, host: Host
) -> AsyncIterator[Two]:
    """Register `served` at `host` and start two workers."""
    await register(connection, served, f"127.0.0.1:{host.port}")
    first = await start_worker(worker_settings(database_url))
    other = await start_worker(worker_settings(database_url))
    try:
        yield Two(Mesh(connection, first, host), other)
    finally:
        await other.stop()
        await first.stop()
