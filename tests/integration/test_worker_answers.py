"""The worker checks every answer of a host: a rogue host (registered at its own address,
without the signing key) that answers with a forged step output and a forged result gets
nothing stored, and the run fails as `Unauthenticated`."""

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from grpc import aio
from structlog.testing import capture_logs

import reverb
from reverb import Context, event
from reverb_contracts.v1 import function_host_pb2 as pb
from reverb_contracts.v1 import function_host_pb2_grpc
from reverb_queue_worker import start as start_worker
from tests.integration.test_worker_hosts import send, wait_status
from tests.integration.test_worker_runs import register, worker_settings

app = reverb.App("rogue-tests")


@app.function("pay-out", trigger=event("test.pay-out"), retries=0)
async def pay_out(ctx: Context) -> str:
    return str(await ctx.step.run("transfer", lambda: "paid"))


def _signed(invocation_id: int, frame: pb.HostFrame, mac: bytes) -> pb.SignedFrame:
    return pb.SignedFrame(invocation_id=invocation_id, frame=frame.SerializeToString(), mac=mac)


class RogueHost(function_host_pb2_grpc.FunctionHostServicer):
    """Answers every Start at once with a forged step output and a forged result, signed
    with MACs it had to make up (it has no key); with `unsigned`, not signed at all."""

    def __init__(self, unsigned: bool = False) -> None:
        self.starts: list[pb.SignedStart] = []
        self.unsigned = unsigned

    async def Describe(self, request: pb.DescribeRequest, context: Any) -> pb.DescribeResponse:
        return pb.DescribeResponse()

    async def Invoke(self, request_iterator: Any, context: Any) -> AsyncIterator[pb.InvokeResponse]:
        async for request in request_iterator:
            for frame in request.frames:
                if frame.WhichOneof("message") != "signed_start":
                    continue
                self.starts.append(frame.signed_start)
                yield self.answer(frame.invocation_id)

    def answer(self, invocation_id: int) -> pb.InvokeResponse:
        step = pb.HostFrame(
            step=pb.StepResult(step_id="transfer", name="transfer", output=b'"forged"')
        )
        completed = pb.HostFrame(completed=pb.RunCompleted(output=b'"forged step output"'))
        if self.unsigned:
            step.invocation_id = completed.invocation_id = invocation_id
            return pb.InvokeResponse(frames=[step, completed])
        return pb.InvokeResponse(
            signed=[
                _signed(invocation_id, step, b"\0" * 32),
                _signed(invocation_id, completed, b""),
            ]
        )


@pytest.fixture(params=[False, True], ids=["forged MAC", "unsigned"])
async def rogue(request: pytest.FixtureRequest) -> AsyncIterator[tuple[RogueHost, int]]:
    server = aio.server()
    servicer = RogueHost(unsigned=request.param)
    function_host_pb2_grpc.add_FunctionHostServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, port
    await server.stop(0)


async def test_a_forged_host_answer_is_refused_and_nothing_is_stored(
    database_url: str, connection: asyncpg.Connection, rogue: tuple[RogueHost, int]
) -> None:
    servicer, port = rogue
    await register(connection, app, f"127.0.0.1:{port}")
    worker = await start_worker(worker_settings(database_url))
    try:
        with capture_logs() as logs:
            event_id = await send(connection, "test.pay-out", {"amount": 999999})
            run = await wait_status(connection, event_id, "failed")
    finally:
        await worker.stop()

    error = orjson.loads(run["error"])
    assert error["type"] == "Unauthenticated"
    problem = "missing MAC" if servicer.unsigned else "invalid MAC"
    assert f"the host's answer is not authenticated ({problem})" in error["message"]
    assert run["output"] is None
    steps = await connection.fetchval(
        "SELECT count(*) FROM reverb.steps WHERE run_id = $1", run["id"]
    )
    assert steps == 0
    refusals = [entry for entry in logs if entry["event"] == "refused a host's answer"]
    assert refusals and refusals[0]["peer"] == f"127.0.0.1:{port}"
    # What the rogue host received was signed: it could not have made the MAC itself.
    (signed,) = servicer.starts
    start = pb.Start.FromString(signed.start)
    assert len(signed.mac) == 32 and start.auth.app_id == app.id
    assert start.auth.host_address == f"127.0.0.1:{port}"


class RogueLogger(RogueHost):
    """Answers every Start with a forged log line (a line claiming a payment), then the
    forged step output and result: a log frame is authenticated like every other."""

    def answer(self, invocation_id: int) -> pb.InvokeResponse:
        line = pb.LogRecord(
            level=pb.LOG_LEVEL_INFO,
            message="paid out",
            step_id="transfer",
            fields=b'{"amount": 999999}',
        )
        logged = _signed(invocation_id, pb.HostFrame(log=line), b"\1" * 32)
        return pb.InvokeResponse(signed=[logged, *super().answer(invocation_id).signed])


async def test_a_forged_log_line_is_refused_and_not_stored(
    database_url: str, connection: asyncpg.Connection
) -> None:
    server = aio.server()
    function_host_pb2_grpc.add_FunctionHostServicer_to_server(RogueLogger(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await register(connection, app, f"127.0.0.1:{port}")
    worker = await start_worker(worker_settings(database_url))
    try:
        event_id = await send(connection, "test.pay-out", {"amount": 999999})
        run = await wait_status(connection, event_id, "failed")
        await worker.services.logs.flush()
    finally:
        await worker.stop()
        await server.stop(0)

    assert orjson.loads(run["error"])["type"] == "Unauthenticated"
    kinds = await connection.fetch(
        "SELECT kind, message FROM reverb.logs WHERE run_id = $1", run["id"]
    )
    assert "user" not in {row["kind"] for row in kinds}
    assert (
        await connection.fetchval("SELECT count(*) FROM reverb.steps WHERE run_id = $1", run["id"])
        == 0
    )
