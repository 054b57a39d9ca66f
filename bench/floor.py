"""PostgreSQL's floor: pgbench committing one-row INSERTs into a jsonb table.

Each pgbench transaction is one INSERT of a small jsonb document, committed with
synchronous_commit on: the most a durable engine could do per commit on this server.
"""

import asyncio
import os
import re
import shutil
import tempfile
from pathlib import Path

import asyncpg

from bench.runner import Probe

SECTION = "PostgreSQL floor"
CLIENTS = (1, 4, 16)
_SCRIPT = 'INSERT INTO floor_rows (body) VALUES (\'{"run": "r", "step": 1, "ok": true}\');\n'
_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")


def pgbench_path() -> str | None:
    return shutil.which("pgbench")


async def prepare(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS floor_rows (id bigserial PRIMARY KEY, body jsonb NOT NULL)"
        )
    finally:
        await connection.close()


async def run_pgbench(database_url: str, clients: int, seconds: int) -> float:
    """Commits per second over `seconds` with `clients` connections."""
    executable = pgbench_path()
    if executable is None:
        raise RuntimeError("pgbench not found (apt-get install postgresql-client)")
    with tempfile.TemporaryDirectory(prefix="reverb-bench-") as folder:
        script = Path(folder) / "insert.sql"
        script.write_text(_SCRIPT, encoding="utf-8")
        process = await asyncio.create_subprocess_exec(
            executable,
            "--no-vacuum",
            "--protocol=prepared",
            f"--client={clients}",
            f"--jobs={min(clients, os.cpu_count() or 1)}",
            f"--time={seconds}",
            f"--file={script}",
            database_url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PGOPTIONS": "-c synchronous_commit=on"},
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=seconds + 30)
    found = _TPS.search(stdout.decode())
    if process.returncode != 0 or found is None:
        raise RuntimeError(f"pgbench failed: {stderr.decode().strip()[-300:]}")
    return float(found.group(1))


def probes(database_url: str, seconds: int) -> list[Probe]:
    def probe(clients: int) -> Probe:
        async def measure() -> dict[str, float]:
            return {
                f"commits/s, {clients} clients": await run_pgbench(database_url, clients, seconds)
            }

        return Probe(SECTION, "pgbench", measure, {f"commits/s, {clients} clients": "commits/s"})

    return [probe(clients) for clients in CLIENTS]
