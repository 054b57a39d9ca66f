"""Schema migrations: pgqueuer's schema, then Reverb's numbered SQL files, in order.

Applied versions are recorded in reverb.schema_migrations; a session advisory
lock lets several processes call `migrate` at once safely.
"""

from importlib import resources

import asyncpg
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.queries import Queries

_LOCK_KEY = 0x7265766572620001  # "reverb" + 1: an arbitrary, fixed advisory-lock key


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for each file in reverb_store/migrations, by version."""
    folder = resources.files("reverb_store") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(connection: asyncpg.Connection) -> list[str]:
    """Bring the database up to date; return the names of the migrations applied."""
    await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        queue = Queries(AsyncpgDriver(connection))
        if not await queue.has_table(queue.qbe.settings.queue_table):
            await queue.install()
        else:
            await queue.upgrade()
        await connection.execute(
            "CREATE SCHEMA IF NOT EXISTS reverb;"
            "CREATE TABLE IF NOT EXISTS reverb.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {
            row["version"]
            for row in await connection.fetch("SELECT version FROM reverb.schema_migrations")
        }
        names = []
        for version, name, sql in migration_files():
            if version in applied:
                continue
            async with connection.transaction():
                await connection.execute(sql)
                await connection.execute(
                    "INSERT INTO reverb.schema_migrations (version, name) VALUES ($1, $2)",
                    version,
                    name,
                )
            names.append(name)
        return names
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
