"""Child processes for `reverb dev`: started in their own session, output relayed with a
name prefix, stopped with SIGTERM (then SIGKILL after a grace period).

No child outlives the supervisor: `stop_all` stops (or kills) every child whatever goes
wrong on the way, output that cannot be written is dropped (`console.say`) while the
children's pipes are still drained, and on Linux each child gets SIGTERM from the kernel
if `reverb dev` dies without stopping it (PR_SET_PDEATHSIG: SIGKILL, a crash).
"""

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import click

from reverb_cli.console import say

_COLOURS = ("cyan", "magenta", "yellow", "green", "blue")


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    relay: asyncio.Task[None]
    stopping: bool = False

    @property
    def exit_code(self) -> int | None:
        return self.process.returncode


@dataclass
class Supervisor:
    """Owns the children of one `reverb dev`; nothing outlives `stop_all`."""

    grace_seconds: float = 10.0
    children: list[Child] = field(default_factory=list)

    async def start(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        """Start `python -m reverb_cli ARGS` with `env` as its whole environment."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reverb_cli",
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            limit=1 << 20,
            # Its own session: the terminal's Ctrl-C reaches only `reverb dev`,
            # which then stops the children in order.
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        colour = _COLOURS[len(self.children) % len(_COLOURS)]
        assert process.stdout is not None
        relay = asyncio.create_task(_relay(click.style(f"{name:>7} |", fg=colour), process.stdout))
        child = Child(name, process, relay)
        self.children.append(child)
        return child

    async def first_exit(self) -> Child:
        """Wait until any child exits and return it."""
        waits = {asyncio.ensure_future(child.process.wait()): child for child in self.children}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return waits[next(iter(done))]

    async def stop(self, child: Child, *, force: bool = False) -> None:
        """SIGTERM, then SIGKILL if it is still running after the grace period."""
        child.stopping = True
        if child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGKILL if force else signal.SIGTERM)
            try:
                await asyncio.wait_for(child.process.wait(), self.grace_seconds)
            except TimeoutError:
                say(f"{child.name} did not stop in {self.grace_seconds:g}s: killing it", err=True)
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await child.relay

    async def stop_all(self, order: list[str], *, force: bool = False) -> None:
        """Stop the named children first, one by one, then the rest together; if anything
        goes wrong (or this is cancelled), kill whichever child still runs."""
        try:
            for name in order:
                for child in self.children:
                    if child.name == name:
                        await self.stop(child, force=force)
            await asyncio.gather(*(self.stop(child, force=force) for child in self.children))
        finally:
            self.kill_all()

    def kill_all(self) -> None:
        """SIGKILL every child still running (a second Ctrl-C)."""
        for child in self.children:
            if child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()


async def _relay(prefix: str, stream: asyncio.StreamReader) -> None:
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line longer than the stream's limit
            line = await stream.read(65536)
        if not line:
            return
        say(f"{prefix} {line.decode(errors='replace').rstrip()}", err=True)


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent() -> Callable[[], None] | None:
    """What a child runs before exec (Linux): ask the kernel for SIGTERM when its parent
    dies, and exit at once if the parent died already."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return set_death_signal
