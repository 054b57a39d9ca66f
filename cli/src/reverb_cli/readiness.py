"""What `reverb dev` waits for while starting, racing each wait against a child's exit and
against Ctrl-C."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from reverb_cli.console import say
from reverb_cli.errors import CliError
from reverb_cli.render import triggers_text
from reverb_cli.supervisor import Child, Supervisor

T = TypeVar("T")
STARTUP_SECONDS = 60.0
_POLL_SECONDS = 0.1
_DUPLICATE_SIGNAL_SECONDS = 1.0


class Stopped(Exception):
    """Ctrl-C or SIGTERM."""


class ChildExited(Exception):
    """A child process exited on its own."""

    def __init__(self, child: Child) -> None:
        super().__init__(child.name)
        self.child = child


class Watch:
    """Turns signals and child exits into exceptions raised from whatever is being awaited."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.forced = False
        self._stop = asyncio.Event()
        self._first_signal: float | None = None

    def signalled(self) -> None:
        """The first signal stops cleanly; another one, a second or more later, kills every
        child at once. (Wrappers such as `uv run` forward the terminal's Ctrl-C that the
        whole process group already got: that duplicate arrives within milliseconds.)"""
        now = time.monotonic()
        if self._first_signal is None:
            self._first_signal = now
            self._stop.set()
        elif now - self._first_signal > _DUPLICATE_SIGNAL_SECONDS and not self.forced:
            say("interrupted again: killing everything", err=True)
            self.forced = True
            self.supervisor.kill_all()

    async def until(self, condition: Awaitable[T], what: str) -> T:
        """Await `condition` (at most STARTUP_SECONDS), unless a child exits or we are stopped."""
        return await self._race(asyncio.wait_for(condition, STARTUP_SECONDS), what)

    async def forever(self) -> None:
        """Wait until a child exits or we are stopped (always raises)."""
        await self._race(asyncio.Event().wait(), "")

    async def _race(self, condition: Awaitable[T], what: str) -> T:
        goal = asyncio.ensure_future(condition)
        exited = asyncio.ensure_future(self.supervisor.first_exit())
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({goal, exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (goal, exited, stopped):
                task.cancel()
        if stopped.done() and not stopped.cancelled():
            raise Stopped
        if exited.done() and not exited.cancelled():
            raise ChildExited(exited.result())
        try:
            return goal.result()
        except TimeoutError:
            raise CliError(f"timed out after {STARTUP_SECONDS:g}s waiting for {what}") from None


def loopback(address: str) -> str:
    """`host:port` to connect to for a bind address (0.0.0.0 and [::] become 127.0.0.1)."""
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "[::]", "::", ""):
        host = "127.0.0.1"
    return f"{host}:{port}"


async def gateway_ready(http_address: str) -> None:
    """Until the gateway's /healthz answers 200."""
    async with httpx.AsyncClient(base_url=f"http://{loopback(http_address)}") as http:

        async def healthy() -> bool:
            try:
                return (await http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await _poll(healthy)


async def listening(address: str) -> None:
    """Until something accepts TCP connections at `address` (skipped for port 0)."""
    host, _, port = loopback(address).rpartition(":")
    if int(port) == 0:
        return

    async def accepts() -> bool:
        try:
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    await _poll(accepts)


async def functions_of(http_address: str, app_id: str, expected: int) -> list[str]:
    """Until the gateway lists `expected` functions of app `app_id`; their descriptions."""
    found: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=f"http://{loopback(http_address)}") as http:

        async def registered() -> bool:
            nonlocal found
            body = (await http.get("/functions")).json()
            found = [item for item in body["functions"] if item.get("app_id") == app_id]
            return len(found) >= expected

        await _poll(registered)
    return [_describe(function) for function in found]


def _describe(function: dict[str, Any]) -> str:
    return f"{function['id']}  ({triggers_text(function)})"


async def _poll(check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(_POLL_SECONDS)
