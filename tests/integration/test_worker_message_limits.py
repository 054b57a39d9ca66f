"""A run too large for its host: it fails clearly, and the other runs on the stream go on."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import orjson
import pytest

import reverb
from reverb import Context, event
from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_ingress_gateway import Gateway
from reverb_queue_worker import start as start_worker
from reverb_queue_worker.hosts.wire import HostStreamError
from reverb_queue_worker.runs.invocation import final_for_error
from tests.integration.test_worker_hosts import run_of, send, wait_status
from tests.integration.test_worker_runs import host_settings, register, worker_settings

app = reverb.App("message-limit-tests")
started = asyncio.Event()
released = asyncio.Event()

# The host accepts messages up to 256 KiB; each step output fits, their memo does not.
HOST_LIMIT = 256 * 1024
OUTPUT_SIZE = 150_000


@app.function("bulky", trigger=event("test.bulky"), retries=3)
async def bulky(ctx: Context) -> str:
    await ctx.step.run("first", lambda: "x" * OUTPUT_SIZE)
    await ctx.step.run("second", lambda: "y" * OUTPUT_SIZE)
    # The next invocation's Start carries both outputs in its memo: too large.
    await ctx.step.sleep("nap", "10ms")
    return "done"


async def block() -> str:
    started.set()
    await released.wait()
    return "unblocked"


@app.function("patient", trigger=event("test.patient"))
async def patient(ctx: Context) -> str:
    return str(await ctx.step.run("wait", block))


@pytest.fixture
async def small_host() -> AsyncIterator[Host]:
    settings = host_settings(max_message_bytes=HOST_LIMIT)
    running = await start_host(app, settings, register_app=False)
    yield running
    await running.stop(0)


async def test_a_start_too_large_for_the_host_fails_its_run_and_spares_the_others(
    database_url: str, connection: asyncpg.Connection, small_host: Host, gateway: Gateway
) -> None:
    started.clear()
    released.clear()
    await register(connection, app, f"127.0.0.1:{small_host.port}")
    worker = await start_worker(worker_settings(database_url))
    try:
        waiting = await send(connection, "test.patient", {})
        await asyncio.wait_for(started.wait(), 10)

        too_large = await send(connection, "test.bulky", {})
        failed = await wait_status(connection, too_large, "failed")

        # The other run, in flight on the same session meanwhile, was never disturbed.
        released.set()
        completed = await wait_status(connection, waiting, "completed")
    finally:
        await worker.stop()

    # Failed for good at once (retries were left), with an error that says why.
    assert (failed["invocations"], failed["attempt"]) == (2, 0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        response = await client.get(f"/runs/{failed['id']}")
    assert response.status_code == 200, response.text
    error = response.json()["error"]
    assert error["type"] == "StartTooLarge"
    assert f"larger than the function host accepts ({HOST_LIMIT} bytes)" in error["message"]

    assert orjson.loads(completed["output"]) == "unblocked"
    assert completed["invocations"] == 1
    assert (await run_of(connection, waiting))["attempt"] == 0


def test_resource_exhausted_from_grpc_counts_an_attempt() -> None:
    # A message too large that the worker's check did not catch fails the attempt (so the
    # run cannot be released and retried forever), as a host error that may be retried.
    failed = final_for_error(HostStreamError("RESOURCE_EXHAUSTED", "received message larger"))
    assert failed is not None
    assert (failed.error.type, failed.retriable) == ("HostError", True)
