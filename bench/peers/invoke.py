"""Running one repetition of a peer as its own process, which prints one JSON object."""

import asyncio
import os
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]


async def run_json(command: list[str], database_url: str, within: float, cwd: Path = ROOT) -> Any:
    """Run `command` with BENCH_DATABASE_URL set; return the JSON of its last stdout line."""
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BENCH_DATABASE_URL": database_url},
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    lines = stdout.decode().strip().splitlines()
    if process.returncode != 0 or not lines:
        tail = stderr.decode().strip()[-400:]
        raise RuntimeError(f"{Path(command[1]).name} exited {process.returncode}: {tail}")
    return orjson.loads(lines[-1])
