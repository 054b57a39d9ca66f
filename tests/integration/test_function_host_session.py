"""FunctionHost.Session over a real gRPC connection, with the test playing the queue worker:
it sends Start frames, reads each StepReport, and answers with the Ack the worker would
send; several invocations share one session."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import orjson
import pytest
from grpc import aio

import reverb
from reverb import Context, NonRetriableError, RetryAfterError, StepError, event
from reverb_contracts.v1 import common_pb2, function_host_pb2, function_host_pb2_grpc
from reverb_function_host import Host, HostSettings
from reverb_function_host import start as start_host

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


@app.function("big-output", trigger=event("test.big"))
async def big_output(ctx: Context) -> object:
    return await ctx.step.run("big", lambda: "x" * 10_000)


async def noted(ctx: Context) -> int:
    ctx.logger.info("inside the step")
    return 1


@app.function("logs", trigger=event("test.logs"))
async def logs(ctx: Context) -> str:
    ctx.logger.info("before", n=1)
    await ctx.step.run("noted", noted, ctx)
    ctx.logger.warning("after")
    return "logged"


@pytest.fixture(scope="module")
async def host() -> AsyncIterator[Host]:
    running = await start_host(
        app, HostSettings(host_address="127.0.0.1:0", host_insecure=True), register_app=False
    )
    yield running
    await running.stop(0)


@pytest.fixture
async def stub(host: Host) -> AsyncIterator[Stub]:
    calls.clear()
    async with aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        yield function_host_pb2_grpc.FunctionHostStub(channel)


def start(
    function_id: str,
    data: dict[str, object] | None = None,
    memo: Sequence[pb.MemoizedStep] = (),
) -> pb.Start:
    trigger = common_pb2.Event(id="event-1", name="test", data=orjson.dumps(data or {}))
    trigger.ts.FromDatetime(datetime.now(UTC))
    return pb.Start(run_id="run-1", function_id=function_id, events=[trigger], memo=memo)


def ack(step_id: str, result: int, output: bytes = b"", **error: str) -> pb.Ack:
    message = pb.Ack(step_id=step_id, result=result, output=output)  # type: ignore[arg-type]
    if error:
        message.error.CopyFrom(common_pb2.ErrorInfo(**error))
    return message


AckPolicy = Callable[[pb.StepResult], pb.Ack]
SessionCall = aio.StreamStreamCall[pb.InvokeRequest, pb.InvokeResponse]


def continue_all(report: pb.StepResult) -> pb.Ack:
    return ack(report.step_id, CONTINUE)


class Session:
    """The test's end of one Session call: frames out, frames in (kept per invocation)."""

    def __init__(self, call: SessionCall) -> None:
        self.call = call
        self.received: dict[int, list[pb.HostFrame]] = {}

    async def send(self, *frames: pb.WorkerFrame) -> None:
        await self.call.write(pb.InvokeRequest(frames=frames))

    async def start(self, invocation_id: int, message: pb.Start) -> None:
        await self.send(pb.WorkerFrame(invocation_id=invocation_id, start=message))

    async def ack(self, invocation_id: int, message: pb.Ack) -> None:
        await self.send(pb.WorkerFrame(invocation_id=invocation_id, ack=message))

    async def next(self, invocation_id: int) -> pb.HostFrame:
        """The next frame about `invocation_id`, reading the stream as needed."""
        while not self.received.get(invocation_id):
            response = await self.call.read()
            assert isinstance(response, pb.InvokeResponse), response
            for frame in response.frames:
                self.received.setdefault(frame.invocation_id, []).append(frame)
        return self.received[invocation_id].pop(0)

    async def run(
        self, invocation_id: int, message: pb.Start, policy: AckPolicy = continue_all
    ) -> tuple[list[pb.StepResult], pb.HostFrame]:
        """Run one invocation to its final frame, acking every report with `policy`."""
        await self.start(invocation_id, message)
        reports: list[pb.StepResult] = []
        while True:
            frame = await self.next(invocation_id)
            if frame.WhichOneof("message") != "step":
                return reports, frame
            reports.append(frame.step)
            await self.ack(invocation_id, policy(frame.step))


async def invoke(
    stub: Stub, message: pb.Start, policy: AckPolicy = continue_all
) -> tuple[list[pb.StepResult], pb.HostFrame]:
    """Run one invocation on a session of its own."""
    async with asyncio.timeout(10):
        session = Session(stub.Invoke())
        result = await session.run(1, message, policy)
        await session.call.done_writing()
        return result


def output(frame: pb.HostFrame) -> object:
    assert frame.WhichOneof("message") == "completed", frame
    return orjson.loads(frame.completed.output)


async def test_three_steps_complete_in_one_invocation(
    stub: Stub,
) -> None:
    reports, final = await invoke(stub, start("three-steps", {"n": 5}))

    assert [(r.step_id, r.name, orjson.loads(r.output)) for r in reports] == [
        ("double", "double", 10),
        ("add-one", "add-one", 11),
        ("double:1", "double", 22),
    ]
    assert output(final) == {"result": 22, "run_id": "run-1", "attempt": 0}


async def test_code_after_a_step_waits_for_its_ack(
    stub: Stub,
) -> None:
    session = Session(stub.Invoke())
    await session.start(1, start("three-steps", {"n": 1}))
    first = await session.next(1)
    assert first.step.step_id == "double"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(session.call.read(), 0.2)
    assert calls == {"double": 1}
    session.call.cancel()


async def test_memoized_steps_are_not_run_again(
    stub: Stub,
) -> None:
    memo = [
        pb.MemoizedStep(step_id="double", output=b"10"),
        pb.MemoizedStep(step_id="add-one", output=b"11"),
    ]
    reports, final = await invoke(stub, start("three-steps", {"n": 5}, memo))

    assert [r.step_id for r in reports] == ["double:1"]
    assert calls == {"double": 1}
    assert output(final)["result"] == 22  # type: ignore[index]


async def test_a_failed_step_raises_step_error_that_the_function_can_catch(
    stub: Stub,
) -> None:
    def fail_for_good(report: pb.StepResult) -> pb.Ack:
        error = report.failure.error
        return ack(report.step_id, FAILED, type=error.type, message=error.message)

    reports, final = await invoke(stub, start("catches"), fail_for_good)

    (report,) = reports
    assert report.failure.retriable
    assert (report.failure.error.type, report.failure.error.message) == ("ValueError", "boom")
    assert "fail" in report.failure.error.stack
    assert output(final) == {"step": "flaky", "type": "ValueError", "message": "boom"}


async def test_retry_later_suspends_without_running_later_code(
    stub: Stub,
) -> None:
    reports, final = await invoke(
        stub, start("catches"), lambda report: ack(report.step_id, RETRY_LATER)
    )

    assert [r.step_id for r in reports] == ["flaky"]
    assert final.WhichOneof("message") == "suspended"
    assert calls["after-failure"] == 0


async def test_a_sleep_is_reported_and_suspends_until_replayed(
    stub: Stub,
) -> None:
    before = datetime.now(UTC)
    reports, final = await invoke(
        stub, start("sleeps"), lambda report: ack(report.step_id, PENDING)
    )

    (report,) = reports
    wake_at = report.sleep.wake_at.ToDatetime(tzinfo=UTC)
    assert before + timedelta(hours=1) <= wake_at <= datetime.now(UTC) + timedelta(hours=1)
    assert final.WhichOneof("message") == "suspended"
    assert calls["after-sleep"] == 0

    memo = [pb.MemoizedStep(step_id="nap", output=b"null")]
    reports, final = await invoke(stub, start("sleeps", memo=memo))
    assert reports == []
    assert output(final) == "awake"


async def test_invoke_reports_the_child_and_returns_its_result(
    stub: Stub,
) -> None:
    reports, final = await invoke(
        stub, start("invokes"), lambda report: ack(report.step_id, PENDING)
    )

    (report,) = reports
    assert report.invoke.function_id == "three-steps"
    assert orjson.loads(report.invoke.data) == {"n": 1}
    assert report.invoke.timeout.ToTimedelta() == timedelta(minutes=10)
    assert final.WhichOneof("message") == "suspended"

    memo = [pb.MemoizedStep(step_id="child", output=b'{"result": 6}')]
    _, final = await invoke(stub, start("invokes", memo=memo))
    assert output(final) == {"result": 6}


async def test_send_event_returns_the_ids_from_the_ack(
    stub: Stub,
) -> None:
    reports, final = await invoke(
        stub,
        start("sends"),
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
        session = Session(stub.Invoke())
        await session.start(1, start("parallel"))
        first, second = await session.next(1), await session.next(1)
        assert {first.step.step_id, second.step.step_id} == {"a", "b"}
        for frame in (second, first):
            await session.ack(1, ack(frame.step.step_id, CONTINUE))
        final = await session.next(1)
    assert output(final) == [2, 3]


async def test_an_uncaught_exception_fails_the_run_retriably(
    stub: Stub,
) -> None:
    _, final = await invoke(stub, start("raises"))

    failed = final.failed
    assert (failed.error.type, failed.error.message) == ("KeyError", "'missing-thing'")
    assert "raise KeyError" in failed.error.stack
    assert failed.retriable


async def test_non_retriable_error_fails_the_run_for_good(
    stub: Stub,
) -> None:
    _, final = await invoke(stub, start("gives-up"))

    assert final.failed.error.type == "NonRetriableError"
    assert not final.failed.retriable


async def test_retry_after_error_carries_its_delay(
    stub: Stub,
) -> None:
    _, final = await invoke(stub, start("later"))

    assert final.failed.retriable
    assert final.failed.retry_after.ToTimedelta() == timedelta(seconds=90)


async def test_a_step_output_that_is_not_json_fails_the_step_for_good(
    stub: Stub,
) -> None:
    def fail_for_good(report: pb.StepResult) -> pb.Ack:
        error = report.failure.error
        return ack(report.step_id, FAILED, type=error.type, message=error.message)

    reports, final = await invoke(stub, start("returns-a-set"), fail_for_good)

    (report,) = reports
    assert not report.failure.retriable
    assert report.failure.error.type == "OutputUnserializableError"
    assert "'make-set'" in report.failure.error.message
    assert "set" in report.failure.error.message.replace("make-set", "")
    assert final.failed.error.type == "StepError"
    assert not final.failed.retriable


async def test_an_unknown_function_fails_the_invocation_as_a_host_error(
    stub: Stub,
) -> None:
    _, final = await invoke(stub, start("no-such-function"))

    assert final.failed.error.type == "HostError"
    assert "no-such-function" in final.failed.error.message
    assert final.failed.retriable


async def test_an_ack_for_no_reported_step_fails_the_invocation_as_a_host_error(
    stub: Stub,
) -> None:
    _, final = await invoke(stub, start("three-steps", {"n": 1}), lambda _: ack("x", CONTINUE))

    assert final.failed.error.type == "HostError"
    assert "'x'" in final.failed.error.message


async def test_invocations_share_a_session_and_its_messages(stub: Stub) -> None:
    async with asyncio.timeout(10):
        session = Session(stub.Invoke())
        await session.send(
            *(pb.WorkerFrame(invocation_id=n, start=start("three-steps", {"n": n})) for n in (1, 2))
        )
        finals: dict[int, object] = {}
        while len(finals) < 2:
            response = await session.call.read()
            assert isinstance(response, pb.InvokeResponse)
            acks = []
            for frame in response.frames:
                if frame.WhichOneof("message") == "step":
                    acks.append(
                        pb.WorkerFrame(
                            invocation_id=frame.invocation_id,
                            ack=ack(frame.step.step_id, CONTINUE),
                        )
                    )
                else:
                    finals[frame.invocation_id] = output(frame)
            if acks:
                await session.send(*acks)  # the acks of both runs in one message
        await session.call.done_writing()
    assert finals == {
        1: {"result": 6, "run_id": "run-1", "attempt": 0},
        2: {"result": 10, "run_id": "run-1", "attempt": 0},
    }


async def test_a_cancelled_invocation_is_abandoned_and_the_session_goes_on(
    stub: Stub,
) -> None:
    started.clear()
    abandoned.clear()
    async with asyncio.timeout(10):
        session = Session(stub.Invoke())
        await session.start(1, start("blocks"))
        await started.wait()
        await session.send(pb.WorkerFrame(invocation_id=1, cancel=pb.Cancel()))
        await abandoned.wait()
        reports, final = await session.run(2, start("three-steps", {"n": 2}))
        await session.call.done_writing()
    assert len(reports) == 3
    assert output(final) == {"result": 10, "run_id": "run-1", "attempt": 0}
    assert not released.is_set()
    assert not session.received.get(1)  # nothing more about the cancelled invocation


async def test_a_disconnected_worker_abandons_the_function(
    stub: Stub,
) -> None:
    started.clear()
    abandoned.clear()
    session = Session(stub.Invoke())
    await session.start(1, start("blocks"))
    async with asyncio.timeout(5):
        await started.wait()
        session.call.cancel()
        await abandoned.wait()
    assert not released.is_set()


async def test_an_output_too_large_for_a_message_fails_the_step_for_good() -> None:
    host = await start_host(
        app,
        HostSettings(host_address="127.0.0.1:0", host_insecure=True, max_message_bytes=4096),
        register_app=False,
    )
    try:
        async with aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            reports, _ = await invoke(
                function_host_pb2_grpc.FunctionHostStub(channel),
                start("big-output"),
                lambda report: ack(
                    report.step_id,
                    FAILED,
                    type=report.failure.error.type,
                    message=report.failure.error.message,
                ),
            )
    finally:
        await host.stop(0)
    (report,) = reports
    assert report.WhichOneof("op") == "failure"
    assert report.failure.error.type == "OutputTooLarge"
    assert not report.failure.retriable


@pytest.mark.parametrize("omitted", [False, True])
async def test_a_start_that_omits_log_lines_gets_none_and_the_same_run(
    stub: Stub, omitted: bool
) -> None:
    """A worker whose log sink is off says so in its Start (`omit_log_lines`): the host
    sends none of the function's ctx.logger lines, which the worker would only drop, and
    everything else as before."""
    message = start("logs")
    message.omit_log_lines = omitted
    kinds: list[str | None] = []
    async with asyncio.timeout(10):
        session = Session(stub.Invoke())
        await session.start(1, message)
        while True:
            frame = await session.next(1)
            kinds.append(frame.WhichOneof("message"))
            if kinds[-1] == "step":
                await session.ack(1, continue_all(frame.step))
            elif kinds[-1] != "log":
                break
        await session.call.done_writing()
    assert output(frame) == "logged"
    if omitted:
        assert kinds == ["step", "completed"]
    else:
        assert kinds == ["log", "log", "step", "log", "completed"]
