"""Child processes for `reverb dev`: started in their own session, output relayed with a
name prefix, stopped with SIGTERM (then SIGKILL after a grace period)."""

import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass, field

import click

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
                click.echo(f"{child.name} did not stop in {self.grace_seconds:g}s: killing it")
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await child.relay

    async def stop_all(self, order: list[str], *, force: bool = False) -> None:
        """Stop the named children first, one by one, then the rest together."""
        for name in order:
            for child in self.children:
                if child.name == name:
                    await self.stop(child, force=force)
        await asyncio.gather(*(self.stop(child, force=force) for child in self.children))

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
        click.echo(f"{prefix} {line.decode(errors='replace').rstrip()}", err=True)
