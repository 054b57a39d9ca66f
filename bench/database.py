"""Fresh databases on the benchmark's PostgreSQL server, one per system measured."""

from urllib.parse import urlsplit, urlunsplit

import asyncpg

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


async def create(server: str, name: str) -> str:
    """Drop `name` if it exists, create it empty, and return its URL."""
    connection = await asyncpg.connect(server)
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {quote(name)} WITH (FORCE)")
        await connection.execute(f"CREATE DATABASE {quote(name)}")
    finally:
        await connection.close()
    return with_database(server, name)


async def drop(server: str, name: str) -> None:
    connection = await asyncpg.connect(server)
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {quote(name)} WITH (FORCE)")
    finally:
        await connection.close()


async def commits(connection: asyncpg.Connection) -> int:
    """Committed transactions in the connection's database so far (pg_stat_database)."""
    value = await connection.fetchval(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    )
    return int(value)
