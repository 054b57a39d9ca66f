"""A description of the machine the figures were measured on."""

import os
import platform
from pathlib import Path

import asyncpg

from bench import usage


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


async def describe(database_url: str) -> dict[str, str | int | float]:
    """CPU model, cores, memory, PostgreSQL version and settings that matter, Python version."""
    connection = await asyncpg.connect(database_url)
    try:
        postgres = await connection.fetchval("SHOW server_version")
        synchronous_commit = await connection.fetchval("SHOW synchronous_commit")
        fsync = await connection.fetchval("SHOW fsync")
    finally:
        await connection.close()
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count() or 0,
        "memory_gib": round(usage.total_memory() / 2**30, 1),
        "postgresql": str(postgres),
        "synchronous_commit": str(synchronous_commit),
        "fsync": str(fsync),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }
