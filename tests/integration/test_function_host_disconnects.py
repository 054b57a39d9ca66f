"""A worker killed outright mid-invocation: the host closes its session for good."""

import asyncio
import gc
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog

import reverb
from reverb import Context, event
from reverb_function_host import Host, HostSettings
from reverb_function_host import start as start_host
from tests import children

app = reverb.App("disconnect-tests")
RUNS = 3
started: asyncio.Queue[None] = asyncio.Queue()
abandoned: asyncio.Queue[None] = asyncio.Queue()


async def block() -> None:
    started.put_nowait(None)
    await asyncio.Event().wait()  # only abandoning the invocation ends it


@app.function("blocks", trigger=event("test.blocks"))
async def blocks(ctx: Context) -> None:
    try:
        await ctx.step.run("wait", block)
    finally:
        # Clean-up that takes a moment: the session's close outlasts the first
        # cancellation of the call's handler.
        await asyncio.sleep(0.2)
        abandoned.put_nowait(None)


@pytest.fixture
async def host() -> AsyncIterator[Host]:
    running = await start_host(
        app, HostSettings(host_address="127.0.0.1:0", host_insecure=True), register_app=False
    )
    yield running
    await running.stop(0)


def _session_tasks() -> set["asyncio.Task[Any]"]:
    """The host's session writers and the abandoning of their invocations."""
    names = ("Session._write_loop", "Execution.close")
    return {
        task
        for task in asyncio.all_tasks()
        if any(name in task.get_coro().__qualname__ for name in names)  # type: ignore[union-attr]
    }


async def test_a_killed_worker_leaves_no_session_task_pending(host: Host) -> None:
    loop = asyncio.get_running_loop()
    problems: list[dict[str, Any]] = []
    handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: problems.append(context))
    worker = await children.spawn(
        sys.executable,
        "-m",
        "tests.integration.session_client",
        str(host.port),
        "blocks",
        str(RUNS),
        stdout=children.PIPE,
    )
    try:
        with structlog.testing.capture_logs() as logs:
            async with asyncio.timeout(10):
                for _ in range(RUNS):
                    await started.get()
                writers = {
                    task for task in _session_tasks() if "_write_loop" in repr(task.get_coro())
                }
                assert len(writers) == 1

                worker.kill()  # kill -9: the stream ends without a word
                await worker.wait()

                # Every invocation in flight is abandoned, and the session's tasks end.
                for _ in range(RUNS):
                    await abandoned.get()
                await asyncio.wait(writers)
                while pending := _session_tasks():
                    await asyncio.wait(pending)
        gc.collect()
    finally:
        loop.set_exception_handler(handler)
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert problems == []  # no "Task was destroyed but it is pending!"
    assert [entry for entry in logs if entry["log_level"] in ("error", "critical")] == []
