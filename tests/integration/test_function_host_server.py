"""The function host as a server: request signing, health, reflection, Describe,
registration with a (test) Ingress peer, and the spans of an invocation."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

import reverb
from reverb import Context, cron, event
from reverb_contracts.v1 import common_pb2, function_host_pb2, ingress_pb2, ingress_pb2_grpc
from reverb_contracts.v1.function_host_pb2_grpc import FunctionHostStub
from reverb_function_host import Host, HostSettings, start
from tests.integration.signed_starts import sign_start
from tests.tracing import recorded_spans

if TYPE_CHECKING:
    from reverb_contracts.v1.function_host_pb2_grpc import FunctionHostAsyncStub

pb = function_host_pb2
KEY = "test-signing-key"
DESCRIBE = "/reverb.v1.FunctionHost/Describe"
SESSION = "/reverb.v1.FunctionHost/Invoke"

app = reverb.App("server-tests")


@app.function("greet", trigger=[event("user.created"), cron("0 9 * * 1", tz="Europe/Paris")])
async def greet(ctx: Context) -> str:
    return str(await ctx.step.run("say-hello", lambda: f"hello {ctx.event.data['name']}"))


def signed(method: str, *, at: float | None = None, key: str = KEY) -> tuple[tuple[str, str]]:
    timestamp = int(time.time() if at is None else at)
    digest = hmac.new(key.encode(), f"{timestamp}:{method}".encode(), hashlib.sha256).hexdigest()
    return (("x-reverb-signature", f"t={timestamp},s={digest}"),)


def settings(**values: Any) -> HostSettings:
    """A host on a free port; insecure unless it is given a signing key."""
    values.setdefault("host_insecure", "signing_key" not in values)
    return HostSettings(host_address="127.0.0.1:0", **values)


@pytest.fixture
async def signed_host() -> AsyncIterator[Host]:
    host = await start(app, settings(signing_key=SecretStr(KEY)), register_app=False)
    yield host
    await host.stop(0)


@pytest.fixture
async def channel(signed_host: Host) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(f"127.0.0.1:{signed_host.port}") as channel:
        yield channel


def function_host(channel: aio.Channel) -> FunctionHostAsyncStub:
    return FunctionHostStub(channel)


async def test_describe_returns_the_app(channel: aio.Channel) -> None:
    response = await function_host(channel).Describe(
        pb.DescribeRequest(), metadata=signed(DESCRIBE)
    )

    assert response.app.id == "server-tests"
    (function,) = response.app.functions
    assert (function.id, function.name, function.retries) == ("greet", "greet", 4)
    assert function.triggers[0].event == "user.created"
    assert (function.triggers[1].cron.expression, function.triggers[1].cron.timezone) == (
        "0 9 * * 1",
        "Europe/Paris",
    )


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param((), id="unsigned"),
        pytest.param(signed(DESCRIBE, key="another-key"), id="wrong-key"),
        pytest.param(signed(SESSION), id="another-method"),
        pytest.param(signed(DESCRIBE, at=time.time() - 301), id="expired"),
        pytest.param((("x-reverb-signature", "garbage"),), id="malformed"),
    ],
)
async def test_a_call_without_a_valid_signature_is_unauthenticated(
    channel: aio.Channel, metadata: tuple[tuple[str, str], ...]
) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await function_host(channel).Describe(pb.DescribeRequest(), metadata=metadata)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_an_unsigned_session_is_unauthenticated(channel: aio.Channel) -> None:
    call = function_host(channel).Invoke()
    start = pb.WorkerFrame(invocation_id=1, start=pb.Start(run_id="r", function_id="greet"))
    with pytest.raises(aio.AioRpcError) as raised:
        await call.write(pb.InvokeRequest(frames=[start]))
        await call.read()
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_health_and_reflection_answer(channel: aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "reverb.v1.FunctionHost"):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING

    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    await call.write(
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="reverb.v1.FunctionHost")
    )
    await call.done_writing()
    listed, described = [response async for response in call]
    services = {service.name for service in listed.list_services_response.service}
    assert {"reverb.v1.FunctionHost", "grpc.health.v1.Health"} <= services
    assert described.file_descriptor_response.file_descriptor_proto


class RecordingIngress(ingress_pb2_grpc.IngressServicer):
    """A stand-in gateway: refuses the first registration (unavailable), records the rest."""

    def __init__(self) -> None:
        self.requests: list[tuple[ingress_pb2.RegisterAppRequest, dict[str, str]]] = []
        self.refusals = 0

    async def RegisterApp(
        self, request: ingress_pb2.RegisterAppRequest, context: aio.ServicerContext[Any, Any]
    ) -> ingress_pb2.RegisterAppResponse:
        if self.refusals == 0:
            self.refusals += 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "starting up")
        metadata = {key: str(value) for key, value in context.invocation_metadata() or ()}
        self.requests.append((request, metadata))
        return ingress_pb2.RegisterAppResponse(changed=True)


async def test_the_host_registers_its_app_and_address_retrying_until_accepted() -> None:
    ingress = RecordingIngress()  # type: ignore[abstract]  # only RegisterApp is called
    server = aio.server()
    ingress_pb2_grpc.add_IngressServicer_to_server(ingress, server)
    ingress_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    host = await start(
        app,
        settings(ingress_address=f"127.0.0.1:{ingress_port}", api_key=SecretStr("secret-key")),
    )
    try:
        async with asyncio.timeout(10):
            await host.registered.wait()
    finally:
        await host.stop(0)
        await server.stop(0)

    assert ingress.refusals == 1
    ((request, metadata),) = ingress.requests
    assert request.host_address == f"127.0.0.1:{host.port}" == host.address
    assert [function.id for function in request.app.functions] == ["greet"]
    assert metadata["authorization"] == "Bearer secret-key"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return recorded_spans()


async def test_an_invocation_and_its_steps_join_the_callers_trace(
    channel: aio.Channel, spans: InMemorySpanExporter, signed_host: Host
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    traceparent = f"00-{trace_id}-b7ad6b7169203331-01"
    call = function_host(channel).Invoke(metadata=signed(SESSION))
    start = pb.Start(
        run_id="run-7",
        function_id="greet",
        events=[common_pb2.Event(id="e", name="user.created", data=b'{"name": "Ada"}')],
        traceparent=traceparent,
    )
    signed_start = sign_start(start, KEY, app.id, signed_host.address)
    await call.write(
        pb.InvokeRequest(frames=[pb.WorkerFrame(invocation_id=1, signed_start=signed_start)])
    )
    report = await call.read()
    assert isinstance(report, pb.InvokeResponse)
    ack = pb.Ack(step_id="say-hello", result=pb.ACK_RESULT_CONTINUE)
    await call.write(pb.InvokeRequest(frames=[pb.WorkerFrame(invocation_id=1, ack=ack)]))
    final = await call.read()
    assert isinstance(final, pb.InvokeResponse)
    completed = pb.HostFrame.FromString(final.signed[0].frame)
    assert completed.completed.output == b'"hello Ada"'
    await call.done_writing()
    async with asyncio.timeout(5):
        await call.wait_for_connection()
        assert await call.code() == grpc.StatusCode.OK

    ours = {span.name: span for span in spans.get_finished_spans() if _in_trace(span, trace_id)}
    invocation, step = ours["invoke greet"], ours["step say-hello"]
    assert invocation.parent is not None and invocation.parent.span_id == 0xB7AD6B7169203331
    assert step.parent is not None and step.parent.span_id == invocation.context.span_id
    assert invocation.attributes is not None
    assert invocation.attributes["reverb.run.id"] == "run-7"


def _in_trace(span: ReadableSpan, trace_id: str) -> bool:
    return span.context is not None and span.context.trace_id == int(trace_id, 16)
