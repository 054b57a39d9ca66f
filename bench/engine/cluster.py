"""Starting Reverb as production runs it: migrate, then gateway, worker and host processes.

Each is `python -m reverb_cli gateway|worker|host APP` with its settings in
REVERB_* environment variables, real HTTP and gRPC on 127.0.0.1, and the
worker→host calls signed. Output goes to bench/results/logs/.
"""

import asyncio
import os
import secrets
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import usage
from bench.http import Connection, HttpError

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "bench" / "results" / "logs"
APP = "bench.engine.app:app"
# The bench's webhook source (`POST /webhooks/bench`, github preset) and its secret.
WEBHOOK_SOURCE = "bench"
WEBHOOK_SECRET = secrets.token_hex(16)


class ClusterError(Exception):
    """The engine could not be started; the reason is in the message and the logs."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Cluster:
    database_url: str
    http_port: int
    processes: dict[str, asyncio.subprocess.Process]

    def connection(self) -> Connection:
        return Connection("127.0.0.1", self.http_port)

    def resident_memory(self, name: str) -> int:
        """Resident memory (bytes) of one service's process and its children."""
        return usage.resident(self.processes[name].pid)

    async def stop(self) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                process.terminate()
        for process in self.processes.values():
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


def _environment(database_url: str, ports: dict[str, int]) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "REVERB_DATABASE_URL": database_url,
        "REVERB_DEV": "true",
        "REVERB_HTTP_ADDRESS": f"127.0.0.1:{ports['http']}",
        "REVERB_INGRESS_ADDRESS": f"127.0.0.1:{ports['ingress']}",
        "REVERB_HOST_ADDRESS": f"127.0.0.1:{ports['host']}",
        "REVERB_SIGNING_KEY": secrets.token_hex(32),
        "REVERB_LOG_JSON": "true",
        f"REVERB_WEBHOOKS__{WEBHOOK_SOURCE.upper()}__PRESET": "github",
        f"REVERB_WEBHOOKS__{WEBHOOK_SOURCE.upper()}__SECRET": WEBHOOK_SECRET,
        f"REVERB_WEBHOOKS__{WEBHOOK_SOURCE.upper()}__EVENT": "bench.webhook.{type}",
    }


async def _spawn(
    name: str,
    arguments: list[str],
    environment: dict[str, str],
    prefix: Sequence[str] = (),
) -> asyncio.subprocess.Process:
    LOGS.mkdir(parents=True, exist_ok=True)
    with (LOGS / f"{name}.log").open("wb") as log:
        return await asyncio.create_subprocess_exec(
            *prefix,
            sys.executable,
            "-m",
            "reverb_cli",
            *arguments,
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )


async def _migrate(environment: dict[str, str]) -> None:
    process = await _spawn("migrate", ["migrate"], environment)
    if await asyncio.wait_for(process.wait(), 120) != 0:
        raise ClusterError(f"reverb migrate failed; see {LOGS / 'migrate.log'}")


async def _wait_ready(cluster: Cluster, functions: int, within: float) -> None:
    """Until the gateway answers and lists the app's functions (the host has registered)."""
    deadline = time.monotonic() + within
    connection = cluster.connection()
    try:
        while time.monotonic() < deadline:
            for name, process in cluster.processes.items():
                if process.returncode is not None:
                    raise ClusterError(
                        f"{name} exited with {process.returncode}; see {LOGS / (name + '.log')}"
                    )
            try:
                response = await connection.request("GET", "/functions")
                if response.status == 200 and _count_functions(response.json()) >= functions:
                    return
            except (HttpError, OSError):
                pass
            await asyncio.sleep(0.2)
    finally:
        await connection.close()
    raise ClusterError(f"the engine was not ready after {within:.0f} s; see {LOGS}")


def _count_functions(body: object) -> int:
    if isinstance(body, dict):
        for key in ("functions", "items", "data"):
            if isinstance(body.get(key), list):
                return len(body[key])
    return len(body) if isinstance(body, list) else 0


async def start(
    database_url: str,
    functions: int,
    within: float = 60,
    extra_environment: Mapping[str, str | None] | None = None,
    prefixes: Mapping[str, Sequence[str]] | None = None,
) -> Cluster:
    """The three services over `database_url`; `extra_environment` is added to each one's
    (the `traces` section's OTLP export variables), a None value removing the variable;
    `prefixes` run a service under a command (`bench.instructions`: valgrind), by service
    name."""
    prefix = prefixes or {}
    ports = {name: free_port() for name in ("http", "ingress", "host")}
    environment = _environment(database_url, ports)
    for name, value in (extra_environment or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    await _migrate(environment)
    processes = {
        "gateway": await _spawn("gateway", ["gateway"], environment, prefix.get("gateway", ()))
    }
    processes["worker"] = await _spawn("worker", ["worker"], environment, prefix.get("worker", ()))
    processes["host"] = await _spawn("host", ["host", APP], environment, prefix.get("host", ()))
    cluster = Cluster(database_url, ports["http"], processes)
    try:
        await _wait_ready(cluster, functions, within)
    except BaseException:
        await cluster.stop()
        raise
    return cluster
