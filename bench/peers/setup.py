"""Installing the peers from their registries into bench-local environments (never vendored).

DBOS goes into bench/peers/dbos/.venv (uv, else venv + pip); Graphile Worker into
bench/peers/graphile/node_modules (npm). An install already in place is reused.
"""

import asyncio
import shutil
import sys
from pathlib import Path

PEERS = Path(__file__).resolve().parent
DBOS = PEERS / "dbos"
GRAPHILE = PEERS / "graphile"


class SetupError(Exception):
    """A peer could not be installed here; the benchmark skips it and says why."""


async def _run(*command: str, cwd: Path, within: float = 300) -> None:
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise SetupError(f"{' '.join(command)}: timed out after {within:.0f} s") from None
    if process.returncode != 0:
        raise SetupError(f"{' '.join(command)}: {output.decode().strip()[-400:]}")


async def _uv() -> list[str] | None:
    """uv on PATH, else `python3 -m uv` (how CI installs it), else None (venv + pip)."""
    if found := shutil.which("uv"):
        return [found]
    python3 = shutil.which("python3")
    if python3 is None:
        return None
    try:
        await _run(python3, "-m", "uv", "--version", cwd=DBOS, within=30)
    except SetupError:
        return None
    return [python3, "-m", "uv"]


async def dbos_python() -> Path:
    """The interpreter of DBOS's own environment, installing it if needed."""
    venv = DBOS / ".venv"
    python = venv / "bin" / "python"
    requirements = DBOS / "requirements.txt"
    marker = venv / ".installed"
    wanted = requirements.read_text(encoding="utf-8")
    if python.exists() and marker.exists() and marker.read_text(encoding="utf-8") == wanted:
        return python
    uv = await _uv()
    if uv:
        await _run(
            *uv,
            "venv",
            "--quiet",
            "--allow-existing",
            "--python",
            sys.executable,
            str(venv),
            cwd=DBOS,
        )
        await _run(
            *uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            "-r",
            str(requirements),
            cwd=DBOS,
        )
    else:
        await _run(sys.executable, "-m", "venv", str(venv), cwd=DBOS)
        await _run(
            str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements), cwd=DBOS
        )
    marker.write_text(wanted, encoding="utf-8")
    return python


async def graphile_node() -> str:
    """The node executable, with graphile-worker installed in bench/peers/graphile."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        raise SetupError("node/npm not found (apt-get install nodejs npm)")
    if not (GRAPHILE / "node_modules" / "graphile-worker" / "package.json").exists():
        await _run(npm, "install", "--no-audit", "--no-fund", "--loglevel=error", cwd=GRAPHILE)
    return node
