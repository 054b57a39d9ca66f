"""Child processes for async tests, spawned by the standard library, driven from asyncio.

Not `asyncio.create_subprocess_exec`: on uvloop (the loop the suite runs on) it forks
through libuv and runs Python in the child between fork and exec (the interpreter's
after-fork hooks, `preexec_fn`), which crashes now and then in a process that has gRPC's
and asyncpg's threads, and it does not know `process_group`. `subprocess.Popen` runs no
Python in the child; its exit is awaited through a pidfd and its pipes are read as
asyncio streams, with no thread and no poll.
"""

import asyncio
import os
import signal
import subprocess
from typing import IO, Any

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT

# The most a stream reader buffers for one line.
_LIMIT = 1 << 20


class Child:
    """A running subprocess: its output as streams, its exit as an awaitable."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self.pid = process.pid
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None
        self._exited = asyncio.get_running_loop().create_future()
        self._pidfd = os.pidfd_open(process.pid)
        asyncio.get_running_loop().add_reader(self._pidfd, self._reap)

    @property
    def returncode(self) -> int | None:
        """The exit status once `wait` saw it (negative: killed by that signal)."""
        return self._process.returncode

    async def attach(self) -> None:
        """Read the child's piped stdout and stderr as streams."""
        self.stdout = await _stream(self._process.stdout)
        self.stderr = await _stream(self._process.stderr)

    def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        code = self._process.wait()  # it exited: the pidfd became readable
        if not self._exited.done():
            self._exited.set_result(code)

    async def wait(self) -> int:
        """Wait for the child to exit; its exit status."""
        return await asyncio.shield(self._exited)

    async def communicate(self) -> tuple[bytes, bytes]:
        """All of stdout and stderr (those that are piped) once the child exited."""
        outputs = await asyncio.gather(_read_all(self.stdout), _read_all(self.stderr))
        await self.wait()
        return outputs[0], outputs[1]

    def send_signal(self, number: int) -> None:
        if self._process.returncode is None:
            self._process.send_signal(number)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


async def spawn(*args: str, **options: Any) -> Child:
    """Start `args` with `subprocess.Popen(args, **options)` (PIPE, DEVNULL, STDOUT,
    `env`, `cwd`, `start_new_session`, `process_group`…)."""
    # Popen returns once the child has exec'd (or failed to): it blocks for a fork, not
    # for the child's work.
    child = Child(subprocess.Popen(args, **options))  # noqa: ASYNC220
    await child.attach()
    return child


class _Reading(asyncio.StreamReaderProtocol):
    """A stream reader's protocol that lets the transport close at end of file (the
    default keeps it half open, which uvloop honours: the pipe would stay open)."""

    def eof_received(self) -> bool:
        super().eof_received()
        return False


async def _stream(pipe: IO[bytes] | None) -> asyncio.StreamReader | None:
    """The pipe as a stream; the pipe is closed at its end of file."""
    if pipe is None:
        return None
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_LIMIT, loop=loop)
    await loop.connect_read_pipe(lambda: _Reading(reader, loop=loop), pipe)
    return reader


async def _read_all(reader: asyncio.StreamReader | None) -> bytes:
    return b"" if reader is None else await reader.read()
