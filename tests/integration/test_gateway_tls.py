"""TLS on the gateway's Ingress listener, with certificates from `reverb certs`: a host
registers over mutual TLS (REVERB_INGRESS_TLS), and its app's events then run on it through
a worker over mutual TLS too; a caller over plaintext, or over TLS without a client
certificate, is refused."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import orjson
import pytest
from grpc import aio
from pydantic import ValidationError

import reverb
from reverb import Context, event
from reverb_cli.certificates import make_certificates
from reverb_contracts.v1 import ingress_pb2, ingress_pb2_grpc
from reverb_function_host import HostSettings
from reverb_function_host import start as start_host
from reverb_ingress_gateway import Gateway, GatewaySettings, start
from reverb_queue_worker import start as start_worker
from tests.integration.test_worker_hosts import send, wait_status
from tests.integration.test_worker_runs import SIGNING_KEY, worker_settings

app = reverb.App("gateway-tls-tests")


@app.function("greets", trigger=event("test.gateway-tls"))
async def greets(ctx: Context) -> str:
    return str(await ctx.step.run("greet", lambda: f"hello {ctx.event.data['name']}"))


@pytest.fixture
async def certificates(tmp_path: Path) -> Path:
    make_certificates(tmp_path, [])
    return tmp_path


@pytest.fixture
async def gateway(database_url: str, certificates: Path) -> AsyncIterator[Gateway]:
    running = await start(
        GatewaySettings(
            database_url=database_url,
            http_address="127.0.0.1:0",
            ingress_address="127.0.0.1:0",
            dev=True,
            tls_cert=certificates / "gateway.pem",
            tls_key=certificates / "gateway-key.pem",
            tls_ca=certificates / "ca.pem",
        )
    )
    yield running
    await running.stop()


async def _register(channel: aio.Channel) -> None:
    request = ingress_pb2.RegisterAppRequest(host_address="127.0.0.1:1", instance_id="x")
    request.app.id = "someone-else"
    await ingress_pb2_grpc.IngressStub(channel).RegisterApp(request, timeout=5)


async def test_a_host_registers_over_mutual_tls_and_its_runs_complete(
    database_url: str, connection: asyncpg.Connection, gateway: Gateway, certificates: Path
) -> None:
    settings = HostSettings(
        host_address="127.0.0.1:0",
        ingress_address=f"localhost:{gateway.grpc_port}",
        ingress_tls=True,
        signing_key=SIGNING_KEY,
        tls_cert=certificates / "host.pem",
        tls_key=certificates / "host-key.pem",
        tls_ca=certificates / "ca.pem",
    )
    host = await start_host(app, settings)
    try:
        async with asyncio.timeout(15):
            await host.registered.wait()
        # The whole mesh on mutual TLS: the worker presents its certificate to the host.
        worker = await start_worker(
            worker_settings(database_url).model_copy(
                update={
                    "tls_cert": certificates / "worker.pem",
                    "tls_key": certificates / "worker-key.pem",
                    "tls_ca": certificates / "ca.pem",
                }
            )
        )
        try:
            event_id = await send(connection, "test.gateway-tls", {"name": "ada"})
            run = await wait_status(connection, event_id, "completed")
        finally:
            await worker.stop()
    finally:
        await host.stop(0)
    assert orjson.loads(run["output"]) == "hello ada"


async def test_plaintext_and_certificateless_callers_are_refused(
    connection: asyncpg.Connection, gateway: Gateway, certificates: Path
) -> None:
    address = f"localhost:{gateway.grpc_port}"
    async with aio.insecure_channel(address) as channel:
        with pytest.raises(aio.AioRpcError) as plaintext:
            await _register(channel)
    assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
    ca = (certificates / "ca.pem").read_bytes()
    async with aio.secure_channel(address, grpc.ssl_channel_credentials(ca)) as channel:
        with pytest.raises(aio.AioRpcError) as anonymous:
            await _register(channel)
    assert anonymous.value.code() == grpc.StatusCode.UNAVAILABLE
    # A worker's certificate is a client's: with it, the call goes through.
    credentials = grpc.ssl_channel_credentials(
        ca,
        (certificates / "worker-key.pem").read_bytes(),
        (certificates / "worker.pem").read_bytes(),
    )
    async with aio.secure_channel(address, credentials) as channel:
        await _register(channel)
    assert (
        await connection.fetchval(
            "SELECT count(*) FROM reverb.app_hosts WHERE app_id = 'someone-else'"
        )
        == 1
    )


def test_a_certificate_without_its_key_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="REVERB_TLS_CERT and REVERB_TLS_KEY go together"):
        GatewaySettings(database_url="postgresql://localhost/x", tls_cert=tmp_path / "c.pem")
    with pytest.raises(ValidationError, match="REVERB_TLS_CA"):
        GatewaySettings(database_url="postgresql://localhost/x", tls_ca=tmp_path / "ca.pem")
