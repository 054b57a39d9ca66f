"""Direct PostgreSQL access for the CLI: connecting with readable errors, migrations."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from reverb_cli.errors import CliError
from reverb_store import control, migrate


def redact(url: str) -> str:
    """The URL with its password replaced by `***`, for messages."""
    parts = urlsplit(url)
    if parts.password:
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{user}:***@{host}")
    return urlunsplit(parts)


def with_database(url: str, database: str) -> str:
    """The same server URL, naming another database."""
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[asyncpg.Connection]:
    try:
        connection = await asyncpg.connect(url, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise CliError(f"cannot connect to PostgreSQL at {redact(url)}: {error}") from None
    except ValueError as error:  # a malformed URL
        raise CliError(f"invalid database URL {redact(url)}: {error}") from None
    try:
        yield connection
    finally:
        await connection.close()


async def apply_migrations(url: str) -> list[str]:
    """Bring the database's schema up to date; return the migrations applied."""
    async with connect(url) as connection:
        try:
            return await migrate(connection)
        except asyncpg.PostgresError as error:
            raise CliError(f"migration failed: {error}") from None


async def forget_hosts(url: str, app_id: str) -> None:
    """Forget where earlier hosts of `app_id` listened (`reverb dev`: they are gone), so the
    app counts as registered only once a host of this session registers it."""
    async with connect(url) as connection:
        await control.forget_hosts(connection, app_id)
