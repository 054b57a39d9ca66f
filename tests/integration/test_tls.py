"""Mutual TLS between workers and hosts, with certificates from `reverb certs`: a worker
with its client certificate runs a function on the host; a client without a certificate,
or over plaintext, is refused."""

from pathlib import Path

import asyncpg
import grpc
import orjson
import pytest
from grpc import aio

import reverb
from reverb import Context, event
from reverb_cli.certificates import make_certificates
from reverb_contracts.v1 import function_host_pb2 as pb
from reverb_contracts.v1.function_host_pb2_grpc import FunctionHostStub
from reverb_function_host import start as start_host
from reverb_queue_worker import start as start_worker
from tests.integration.test_worker_hosts import send, wait_status
from tests.integration.test_worker_runs import host_settings, register, worker_settings

app = reverb.App("tls-tests")


@app.function("greets", trigger=event("test.tls"))
async def greets(ctx: Context) -> str:
    return str(await ctx.step.run("greet", lambda: f"hello {ctx.event.data['name']}"))


async def test_a_worker_reaches_a_host_over_mutual_tls_and_others_are_refused(
    database_url: str, connection: asyncpg.Connection, tmp_path: Path
) -> None:
    make_certificates(tmp_path, [])
    assert (tmp_path / "host-key.pem").stat().st_mode & 0o777 == 0o600
    ca = tmp_path / "ca.pem"
    host = await start_host(
        app,
        host_settings(
            tls_cert=tmp_path / "host.pem",
            tls_key=tmp_path / "host-key.pem",
            tls_ca=ca,
        ),
        register_app=False,
    )
    address = host.address
    try:
        await register(connection, app, address)
        settings = worker_settings(database_url).model_copy(
            update={
                "tls_cert": tmp_path / "worker.pem",
                "tls_key": tmp_path / "worker-key.pem",
                "tls_ca": ca,
            }
        )
        worker = await start_worker(settings)
        try:
            event_id = await send(connection, "test.tls", {"name": "ada"})
            run = await wait_status(connection, event_id, "completed")
        finally:
            await worker.stop()
        assert orjson.loads(run["output"]) == "hello ada"

        # TLS, but no client certificate: the handshake is refused.
        credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
        async with aio.secure_channel(address, credentials) as channel:
            with pytest.raises(aio.AioRpcError) as raised:
                await FunctionHostStub(channel).Describe(pb.DescribeRequest(), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        # Plaintext: refused too.
        async with aio.insecure_channel(address) as channel:
            with pytest.raises(aio.AioRpcError) as raised:
                await FunctionHostStub(channel).Describe(pb.DescribeRequest(), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await host.stop(0)
