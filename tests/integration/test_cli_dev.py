"""`reverb dev examples/shop.py`: one command starts the gateway, a worker and a host for the
example app (and an embedded PostgreSQL when no database is given); the example's flows run
end to end; Ctrl-C stops everything; a crashed service stops the rest with status 1."""

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]
import pytest

from reverb_store import control
from tests import children
from tests.e2e.processes import eventually, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop.py"


class Dev:
    """A `reverb dev` subprocess with its output collected line by line."""

    def __init__(self, process: children.Child, http_port: int) -> None:
        self.process = process
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}")
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            asyncio.create_task(self._collect(process.stdout, self.stdout)),
            asyncio.create_task(self._collect(process.stderr, self.stderr)),
        ]

    @staticmethod
    async def _collect(stream: asyncio.StreamReader, lines: list[str]) -> None:
        async for line in stream:
            lines.append(line.decode(errors="replace").rstrip())

    def output(self) -> str:
        return "\n".join(["--- stdout", *self.stdout, "--- stderr", *self.stderr])

    async def wait_for(self, predicate: Callable[[], bool], what: str, within: float = 60) -> None:
        async def check() -> bool:
            if self.process.returncode is not None:
                raise AssertionError(f"reverb dev exited while waiting for {what}\n{self.output()}")
            return predicate()

        await eventually(check, within=within, what=what)

    async def wait_for_async(self, check: Callable[[], Awaitable[bool]], what: str) -> None:
        async def alive_and_checked() -> bool:
            if self.process.returncode is not None:
                raise AssertionError(f"reverb dev exited while waiting for {what}\n{self.output()}")
            return await check()

        await eventually(alive_and_checked, within=60, what=what)

    async def started(self) -> None:
        await self.wait_for(
            lambda: any("Reverb is running" in line for line in self.stdout), "the banner"
        )

    def children(self) -> list[psutil.Process]:
        found: list[psutil.Process] = psutil.Process(self.process.pid).children(recursive=True)
        return found

    async def exit_code(self, within: float = 30) -> int:
        code = await asyncio.wait_for(self.process.wait(), within)
        await asyncio.gather(*self._readers)
        return code

    async def finished_run(self, event_id: str, function_id: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def finished() -> bool:
            response = await self.http.get("/runs", params={"event": event_id})
            for run in response.json()["runs"]:
                if run["function_id"] == function_id and run["status"] in ("completed", "failed"):
                    found.update(run)
            return bool(found)

        await eventually(finished, within=60, what=f"{function_id} to finish")
        return found


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free ports (`reverb dev` puts the worker's and the
    host's /metrics on the two ports after the gateway's)."""
    for _ in range(100):
        first = free_port()
        if first + count <= 65536 and all(
            port_is_free(port) for port in range(first, first + count)
        ):
            return first
    raise AssertionError(f"no {count} consecutive free ports")


def dev_environment(ports: list[int], database_url: str | None) -> dict[str, str]:
    """The environment of a `reverb dev` on `ports` (HTTP, Ingress, host), its /metrics on
    free ports of their own (not the default 9464-9466, which another test may hold)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("REVERB_")}
    http, ingress, host = ports
    env.update(
        REVERB_HTTP_ADDRESS=f"127.0.0.1:{http}",
        REVERB_INGRESS_ADDRESS=f"127.0.0.1:{ingress}",
        REVERB_HOST_ADDRESS=f"127.0.0.1:{host}",
        REVERB_METRICS_ADDRESS=f"127.0.0.1:{free_port_run(3)}",
    )
    if database_url is not None:
        env["REVERB_DATABASE_URL"] = database_url
    return env


@contextlib.asynccontextmanager
async def reverb_dev(cwd: Path, database_url: str | None) -> AsyncIterator[Dev]:
    http_port = free_port()
    env = dev_environment([http_port, free_port(), free_port()], database_url)
    process = await children.spawn(
        sys.executable,
        "-m",
        "reverb_cli",
        "dev",
        str(SHOP),
        cwd=cwd,
        env=env,
        stdout=children.PIPE,
        stderr=children.PIPE,
        start_new_session=True,
    )
    dev = Dev(process, http_port)
    try:
        yield dev
    finally:
        if process.returncode is None:
            for child in dev.children():
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            process.kill()
            await process.wait()
        await dev.http.aclose()


async def test_the_order_flow_runs_end_to_end_and_ctrl_c_stops_everything(
    database_url: str, tmp_path: Path
) -> None:
    async with reverb_dev(tmp_path, database_url) as dev:
        await dev.started()
        banner = "\n".join(dev.stdout)
        assert "place-order  (event order.placed)" in banner
        assert "handle-sign-up  (event user.signed_up)" in banner
        children = dev.children()
        assert len(children) >= 3

        order = {"id": "o-1", "items": [{"sku": "mug", "quantity": 2}], "email": "a@b.c"}
        response = await dev.http.post("/events", json={"name": "order.placed", "data": order})
        assert response.status_code == 202, response.text
        (event_id,) = response.json()["ids"]
        placed = await dev.finished_run(event_id, "place-order")
        assert placed["status"] == "completed", placed
        assert placed["output"]["total"] == 2400
        assert placed["output"]["reservation"].startswith("res-")

        run = (await dev.http.get(f"/runs/{placed['id']}")).json()
        steps = [(step["id"], step["kind"], step["status"]) for step in run["steps"]]
        assert steps == [
            ("price-order", "run", "completed"),
            ("reserve-stock", "invoke", "completed"),
            ("announce", "send_event", "completed"),
        ]
        (confirmed_id,) = next(s for s in run["steps"] if s["id"] == "announce")["output"]
        receipt = await dev.finished_run(confirmed_id, "send-receipt")
        assert receipt["output"]["subject"] == "Order o-1: 24.00 EUR"

        dev.process.send_signal(signal.SIGINT)
        assert await dev.exit_code() == 0, dev.output()
        assert not [child for child in children if child.is_running()], "a child outlived dev"


async def test_dev_serves_the_gateways_metrics_and_says_where_the_others_are(
    database_url: str, tmp_path: Path
) -> None:
    async with reverb_dev(tmp_path, database_url) as dev:
        await dev.started()
        (line,) = [line for line in dev.stdout if line.strip().startswith("metrics")]
        urls = dict(re.findall(r"(gateway|worker|host) (http://\S+/metrics)", line))
        assert set(urls) == {"gateway", "worker", "host"}, line
        gateway_port = int(urls["gateway"].rsplit(":", 1)[1].split("/")[0])
        assert urls["worker"].endswith(f":{gateway_port + 1}/metrics")
        assert urls["host"].endswith(f":{gateway_port + 2}/metrics")

        order = {"id": "o-3", "items": [{"sku": "mug", "quantity": 1}], "email": "a@b.c"}
        response = await dev.http.post("/events", json={"name": "order.placed", "data": order})
        (event_id,) = response.json()["ids"]
        placed = await dev.finished_run(event_id, "place-order")
        assert placed["status"] == "completed", placed

        async with httpx.AsyncClient() as client:
            scraped = {name: (await client.get(url)).text for name, url in urls.items()}
        assert 'reverb_events_accepted_total{source="api"} 1.0' in scraped["gateway"]
        assert 'reverb_runs_completed_total{function_id="place-order"} 1.0' in scraped["worker"]
        assert "reverb_host_sessions 1.0" in scraped["host"]


async def test_an_event_sent_once_healthz_answers_200_starts_a_run(
    database_url: str, tmp_path: Path
) -> None:
    # What an earlier session left: the app registered, with other functions, at a host
    # that is gone. It must not count as registered.
    connection = await asyncpg.connect(database_url)
    try:
        lease = control.HostLease("127.0.0.1:9", timedelta(minutes=5))
        await control.register_app(connection, control.AppDefinition("shop", ()), lease)
    finally:
        await connection.close()
    async with reverb_dev(tmp_path, database_url) as dev:
        refusals: list[str] = []

        async def healthy() -> bool:
            try:
                response = await dev.http.get("/healthz")
            except httpx.TransportError:
                return False
            if response.status_code != 200:
                assert response.status_code == 503, response.text
                refusals.append(response.json()["error"]["message"])
            return response.status_code == 200

        await dev.wait_for_async(healthy, "/healthz to answer 200")
        order = {"id": "o-2", "items": [{"sku": "tee", "quantity": 1}], "email": "a@b.c"}
        response = await dev.http.post("/events", json={"name": "order.placed", "data": order})
        (event_id,) = response.json()["ids"]
        placed = await dev.finished_run(event_id, "place-order")
        assert placed["status"] == "completed", placed
        assert set(refusals) <= {"waiting for app shop to register"}, refusals


async def test_a_crashed_service_stops_the_others_with_status_1(
    database_url: str, tmp_path: Path
) -> None:
    async with reverb_dev(tmp_path, database_url) as dev:
        await dev.started()
        children = dev.children()
        (worker,) = [child for child in children if child.cmdline()[-1:] == ["worker"]]
        worker.kill()
        assert await dev.exit_code() == 1, dev.output()
        assert any("the worker exited unexpectedly" in line for line in dev.stderr), dev.output()
        assert not [child for child in children if child.is_running()], "a child outlived dev"


async def test_without_a_database_url_it_runs_an_embedded_postgresql(tmp_path: Path) -> None:
    async with reverb_dev(tmp_path, None) as dev:
        await dev.started()
        assert any("embedded PostgreSQL" in line for line in dev.stdout), dev.output()
        assert (tmp_path / ".reverb" / "pgdata" / "PG_VERSION").exists()
        functions = (await dev.http.get("/functions")).json()["functions"]
        assert {function["id"] for function in functions} >= {"place-order", "handle-sign-up"}
        dev.process.send_signal(signal.SIGTERM)
        assert await dev.exit_code() == 0, dev.output()
    # The server ran only while `reverb dev` did.
    pgdata = str(tmp_path / ".reverb" / "pgdata")
    servers = [p for p in psutil.process_iter(["cmdline"]) if pgdata in (p.info["cmdline"] or [])]
    assert not servers


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.parametrize("piped", ["stdout", "stdout-and-stderr"])
async def test_ctrl_c_under_tee_stops_every_child_even_once_tee_is_gone(
    database_url: str, tmp_path: Path, piped: str
) -> None:
    """`reverb dev | tee dev.log` (or `2>&1 | tee`), then Ctrl-C: the terminal sends SIGINT
    to both, tee dies at once, and reverb dev must still stop its children."""
    ports = [free_port() for _ in range(3)]
    read_end, write_end = os.pipe()
    with (tmp_path / "stderr.log").open("wb") as terminal:
        dev = await children.spawn(
            sys.executable,
            "-m",
            "reverb_cli",
            "dev",
            str(SHOP),
            cwd=tmp_path,
            env=dev_environment(ports, database_url),
            stdin=children.DEVNULL,
            stdout=write_end,
            stderr=write_end if piped == "stdout-and-stderr" else terminal,
            process_group=0,  # the shell's job: reverb dev and tee in one process group
        )
        tee = await children.spawn(
            "tee",
            str(tmp_path / "dev.log"),
            stdin=read_end,
            stdout=children.PIPE,
            process_group=dev.pid,
        )
    os.close(read_end)
    os.close(write_end)
    descendants: list[psutil.Process] = []
    try:
        assert tee.stdout is not None
        async with asyncio.timeout(60):
            async for line in tee.stdout:
                if b"Reverb is running" in line:
                    break
        descendants = psutil.Process(dev.pid).children(recursive=True)
        assert len(descendants) >= 3

        os.killpg(dev.pid, signal.SIGINT)  # Ctrl-C
        assert await asyncio.wait_for(tee.wait(), 10) != 0
        assert await asyncio.wait_for(dev.wait(), 40) == 0
        _, alive = psutil.wait_procs(descendants, timeout=10)
        assert not alive, f"children outlived reverb dev: {alive}"
        assert all(port_is_free(port) for port in ports)
    finally:
        for child in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        for process in (dev, tee):
            if process.returncode is None:
                process.kill()
            await process.wait()


async def test_children_die_with_a_killed_reverb_dev(database_url: str, tmp_path: Path) -> None:
    async with reverb_dev(tmp_path, database_url) as dev:
        await dev.started()
        children = dev.children()
        dev.process.kill()  # no chance to stop them
        await dev.process.wait()
        _, alive = psutil.wait_procs(children, timeout=20)
        for child in alive:
            child.kill()
        assert not alive, f"children outlived reverb dev: {alive}"
