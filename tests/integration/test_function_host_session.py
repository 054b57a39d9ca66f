"""FunctionHost.Invoke over a real gRPC connection, with the test playing the queue worker:
it sends Start, reads each StepReport, and answers with the Ack the worker would send."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import grpc
import orjson
import pytest
from grpc import aio

import reverb
from reverb import Context, NonRetriableError, RetryAfterError, StepError, event
from reverb_contracts.v1 import common_pb2, function_host_pb2, function_host_pb2_grpc
from reverb_function_host import Host, HostSettings, start

if TYPE_CHECKING:
    from reverb_contracts.v1.function_host_pb2_grpc import FunctionHostAsyncStub as Stub

pb = function_host_pb2
CONTINUE, PENDING = pb.ACK_RESULT_CONTINUE, pb.ACK_RESULT_PENDING
FAILED, RETRY_LATER = pb.ACK_RESULT_FAILED, pb.ACK_RESULT_RETRY_LATER

app = reverb.App("invoke-tests")
calls: Counter[str] = Counter()
started = asyncio.Event()
released = asyncio.Event()
abandoned = asyncio.Event()


def double(value: int) -> int:
    calls["double"] += 1
    return value * 2


async def add_one(value: int) -> int:
    calls["add_one"] += 1
    return value + 1


def fail(message: str) -> None:
    calls["fail"] += 1
    raise ValueError(message)


@app.function("three-steps", trigger=event("test.three"))
async def three_steps(ctx: Context) -> dict[str, object]:
    a = await ctx.step.run("double", double, ctx.event.data["n"])
    b = await ctx.step.run("add-one", add_one, a)
    c = await ctx.step.run("double", double, b)
    return {"result": c, "run_id": ctx.run_id, "attempt": ctx.attempt}


@app.function("catches", trigger=event("test.catches"))
async def catches(ctx: Context) -> dict[str, str]:
    try:
        await ctx.step.run("flaky", fail, "boom")
    except StepError as error:
        calls["after-failure"] += 1
        return {"step": error.step_id, "type": error.error_type, "message": error.message}
    return {}


@app.function("sleeps", trigger=event("test.sleeps"))
async def sleeps(ctx: Context) -> str:
    await ctx.step.sleep("nap", "1h")
    calls["after-sleep"] += 1
    return "awake"


@app.function("invokes", trigger=event("test.invokes"))
async def invokes(ctx: Context) -> object:
    return await ctx.step.invoke("child", "three-steps", {"n": 1}, timeout="10m")


@app.function("sends", trigger=event("test.sends"))
async def sends(ctx: Context) -> list[str]:
    return await ctx.step.send_event("notify", "user.notified", {"user": 7})


@app.function("parallel", trigger=event("test.parallel"))
async def parallel(ctx: Context) -> list[int]:
    return list(await asyncio.gather(ctx.step.run("a", add_one, 1), ctx.step.run("b", add_one, 2)))


@app.function("raises", trigger=event("test.raises"))
async def raises(ctx: Context) -> None:
    raise KeyError("missing-thing")


@app.function("gives-up", trigger=event("test.gives-up"))
async def gives_up(ctx: Context) -> None:
    raise NonRetriableError("the account is closed")


@app.function("later", trigger=event("test.later"))
async def later(ctx: Context) -> None:
    raise RetryAfterError("90s", "rate limited")


@app.function("returns-a-set", trigger=event("test.set-output"))
async def returns_a_set(ctx: Context) -> object:
    return await ctx.step.run("make-set", lambda: {1, 2})


async def block() -> None:
    started.set()
    await released.wait()


@app.function("blocks", trigger=event("test.blocks"))
async def blocks(ctx: Context) -> None:
    try:
        await ctx.step.run("wait", block)
    finally:
        abandoned.set()


@pytest.fixture(scope="module")
async def host() -> AsyncIterator[Host]:
    running = await start(app, HostSettings(host_address="127.0.0.1:0"), register_app=False)
    yield running
    await running.stop(0)


@pytest.fixture
async def stub(host: Host) -> AsyncIterator[Stub]:
    calls.clear()
    async with aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        yield function_host_pb2_grpc.FunctionHostStub(channel)


def start_request(
    function_id: str,
    data: dict[str, object] | None = None,
    memo: Sequence[pb.MemoizedStep] = (),
) -> pb.InvokeRequest:
    trigger = common_pb2.Event(id="event-1", name="test", data=orjson.dumps(data or {}))
    trigger.ts.FromDatetime(datetime.now(UTC))
    start = pb.Start(run_id="run-1", function_id=function_id, events=[trigger], memo=memo)
    return pb.InvokeRequest(start=start)


def ack(step_id: str, result: int, output: bytes = b"", **error: str) -> pb.InvokeRequest:
    message = pb.Ack(step_id=step_id, result=result, output=output)  # type: ignore[arg-type]
    if error:
        message.error.CopyFrom(common_pb2.ErrorInfo(**error))
    return pb.InvokeRequest(ack=message)


AckPolicy = Callable[[pb.StepReport], pb.InvokeRequest]
InvokeCall = aio.StreamStreamCall[pb.InvokeRequest, pb.InvokeResponse]


def continue_all(report: pb.StepReport) -> pb.InvokeRequest:
    return ack(report.step_id, CONTINUE)


async def invoke(
    stub: Stub,
    request: pb.InvokeRequest,
    policy: AckPolicy = continue_all,
) -> tuple[list[pb.StepReport], pb.InvokeResponse]:
    """Run one invocation to its final message, acking every report with `policy`."""
    async with asyncio.timeout(10):
        call = stub.Invoke()
        await call.write(request)
        reports: list[pb.StepReport] = []
        while True:
            response = await read(call)
            if response.WhichOneof("message") != "step":
                await call.done_writing()
                return reports, response
            reports.append(response.step)
            await call.write(policy(response.step))


async def read(call: InvokeCall) -> pb.InvokeResponse:
    response = await call.read()
    assert isinstance(response, pb.InvokeResponse), response
    return response


def output(response: pb.InvokeResponse) -> object:
    assert response.WhichOneof("message") == "completed", response
    return orjson.loads(response.completed.output)


async def test_three_steps_complete_in_one_invocation(
    stub: Stub,
) -> None:
    reports, final = await invoke(stub, start_request("three-steps", {"n": 5}))

    assert [(r.step_id, r.name, orjson.loads(r.output)) for r in reports] == [
        ("double", "double", 10),
        ("add-one", "add-one", 11),
        ("double:1", "double", 22),
    ]
    assert output(final) == {"result": 22, "run_id": "run-1", "attempt": 0}


async def test_code_after_a_step_waits_for_its_ack(
    stub: Stub,
) -> None:
    call = stub.Invoke()
    await call.write(start_request("three-steps", {"n": 1}))
    first = await read(call)
    assert first.step.step_id == "double"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(call.read(), 0.2)
    assert calls == {"double": 1}
    call.cancel()


async def test_memoized_steps_are_not_run_again(
    stub: Stub,
) -> None:
    memo = [
        pb.MemoizedStep(step_id="double", output=b"10"),
        pb.MemoizedStep(step_id="add-one", output=b"11"),
    ]
    reports, final = await invoke(stub, start_request("three-steps", {"n": 5}, memo))

    assert [r.step_id for r in reports] == ["double:1"]
    assert calls == {"double": 1}
    assert output(final)["result"] == 22  # type: ignore[index]


async def test_a_failed_step_raises_step_error_that_the_function_can_catch(
    stub: Stub,
) -> None:
    def fail_for_good(report: pb.StepReport) -> pb.InvokeRequest:
        error = report.failure.error
        return ack(report.step_id, FAILED, type=error.type, message=error.message)

    reports, final = await invoke(stub, start_request("catches"), fail_for_good)

    (report,) = reports
    assert report.failure.retriable
    assert (report.failure.error.type, report.failure.error.message) == ("ValueError", "boom")
    assert "fail" in report.failure.error.stack
    assert output(final) == {"step": "flaky", "type": "ValueError", "message": "boom"}


async def test_retry_later_suspends_without_running_later_code(
    stub: Stub,
) -> None:
    reports, final = await invoke(
        stub, start_request("catches"), lambda report: ack(report.step_id, RETRY_LATER)
    )

    assert [r.step_id for r in reports] == ["flaky"]
    assert final.WhichOneof("message") == "suspended"
    assert calls["after-failure"] == 0


async def test_a_sleep_is_reported_and_suspends_until_replayed(
    stub: Stub,
) -> None:
    before = datetime.now(UTC)
    reports, final = await invoke(
        stub, start_request("sleeps"), lambda report: ack(report.step_id, PENDING)
    )

    (report,) = reports
    wake_at = report.sleep.wake_at.ToDatetime(tzinfo=UTC)
    assert before + timedelta(hours=1) <= wake_at <= datetime.now(UTC) + timedelta(hours=1)
    assert final.WhichOneof("message") == "suspended"
    assert calls["after-sleep"] == 0

    memo = [pb.MemoizedStep(step_id="nap", output=b"null")]
    reports, final = await invoke(stub, start_request("sleeps", memo=memo))
    assert reports == []
    assert output(final) == "awake"


async def test_invoke_reports_the_child_and_returns_its_result(
    stub: Stub,
) -> None:
    reports, final = await invoke(
        stub, start_request("invokes"), lambda report: ack(report.step_id, PENDING)
    )

    (report,) = reports
    assert report.invoke.function_id == "three-steps"
    assert orjson.loads(report.invoke.data) == {"n": 1}
    assert report.invoke.timeout.ToTimedelta() == timedelta(minutes=10)
    assert final.WhichOneof("message") == "suspended"

    memo = [pb.MemoizedStep(step_id="child", output=b'{"result": 6}')]
    _, final = await invoke(stub, start_request("invokes", memo=memo))
    assert output(final) == {"result": 6}


async def test_send_event_returns_the_ids_from_the_ack(
    stub: Stub,
) -> None:
    reports, final = await invoke(
        stub,
        start_request("sends"),
        lambda report: ack(report.step_id, CONTINUE, output=b'["event-9"]'),
    )

    (report,) = reports
    (sent,) = report.send_events.events
    assert (sent.name, orjson.loads(sent.data)) == ("user.notified", {"user": 7})
    assert output(final) == ["event-9"]


async def test_parallel_steps_report_before_either_is_acked(
    stub: Stub,
) -> None:
    async with asyncio.timeout(10):
        call = stub.Invoke()
        await call.write(start_request("parallel"))
        first, second = await read(call), await read(call)
        assert {first.step.step_id, second.step.step_id} == {"a", "b"}
        for response in (second, first):
            await call.write(ack(response.step.step_id, CONTINUE))
        final = await read(call)
    assert output(final) == [2, 3]


async def test_an_uncaught_exception_fails_the_run_retriably(
    stub: Stub,
) -> None:
    _, final = await invoke(stub, start_request("raises"))

    failed = final.failed
    assert (failed.error.type, failed.error.message) == ("KeyError", "'missing-thing'")
    assert "raise KeyError" in failed.error.stack
    assert failed.retriable


async def test_non_retriable_error_fails_the_run_for_good(
    stub: Stub,
) -> None:
    _, final = await invoke(stub, start_request("gives-up"))

    assert final.failed.error.type == "NonRetriableError"
    assert not final.failed.retriable


async def test_retry_after_error_carries_its_delay(
    stub: Stub,
) -> None:
    _, final = await invoke(stub, start_request("later"))

    assert final.failed.retriable
    assert final.failed.retry_after.ToTimedelta() == timedelta(seconds=90)


async def test_a_step_output_that_is_not_json_fails_the_step_for_good(
    stub: Stub,
) -> None:
    def fail_for_good(report: pb.StepReport) -> pb.InvokeRequest:
        error = report.failure.error
        return ack(report.step_id, FAILED, type=error.type, message=error.message)

    reports, final = await invoke(stub, start_request("returns-a-set"), fail_for_good)

    (report,) = reports
    assert not report.failure.retriable
    assert report.failure.error.type == "OutputUnserializableError"
    assert "'make-set'" in report.failure.error.message
    assert "set" in report.failure.error.message.replace("make-set", "")
    assert final.failed.error.type == "StepError"
    assert not final.failed.retriable


async def test_an_unknown_function_is_not_found(
    stub: Stub,
) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await invoke(stub, start_request("no-such-function"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-function" in (raised.value.details() or "")


async def test_an_ack_for_no_reported_step_is_refused(
    stub: Stub,
) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await invoke(stub, start_request("three-steps", {"n": 1}), lambda _: ack("x", CONTINUE))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_disconnected_worker_abandons_the_function(
    stub: Stub,
) -> None:
    call = stub.Invoke()
    await call.write(start_request("blocks"))
    async with asyncio.timeout(5):
        await started.wait()
        call.cancel()
        await abandoned.wait()
    assert not released.is_set()
