"""Signed invocations on a real host, with the test playing the worker (and the attacker):
a captured Start replayed, a forged memo, a Start for another app, a stale one, a key
rotated out, malformed stream signatures; and the MACs of the host's answers."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc import aio
from pydantic import SecretStr
from structlog.testing import capture_logs

import reverb
from reverb import Context, event
from reverb.signing import Keyring, answer_prefix
from reverb_contracts.v1 import common_pb2
from reverb_contracts.v1 import function_host_pb2 as pb
from reverb_contracts.v1.function_host_pb2_grpc import FunctionHostStub
from reverb_function_host import Host, HostSettings, InsecureHostError, start
from reverb_function_host.signing import signature
from tests.integration.signed_starts import altered, nonce_of, sign_start

if TYPE_CHECKING:
    from reverb_contracts.v1.function_host_pb2_grpc import FunctionHostAsyncStub

KEY, OLD_KEY = "the-current-key", "the-previous-key"
SESSION = "/reverb.v1.FunctionHost/Invoke"

payouts = reverb.App("payouts")
other = reverb.App("other-app")
paid: Counter[str] = Counter()


@payouts.function("pay-out", trigger=event("payout.requested"))
async def pay_out(ctx: Context) -> object:
    amount = ctx.event.data["amount"]
    paid[ctx.run_id] += amount
    return await ctx.step.run("transfer", lambda: f"paid {amount}")


@other.function("pay-out", trigger=event("payout.requested"))
async def other_pay_out(ctx: Context) -> object:
    paid[ctx.run_id] += 1
    return "other"


def header(key: str = KEY) -> tuple[tuple[str, str]]:
    return (("x-reverb-signature", signature(key.encode(), SESSION, int(time.time()))),)


def a_start(run_id: str, *, memo: list[pb.MemoizedStep] | None = None) -> pb.Start:
    return pb.Start(
        run_id=run_id,
        function_id="pay-out",
        events=[common_pb2.Event(id="e1", name="payout.requested", data=b'{"amount": 999999}')],
        memo=memo or [],
    )


async def serve(app: reverb.App, **values: Any) -> Host:
    settings = HostSettings(host_address="127.0.0.1:0", signing_key=SecretStr(KEY), **values)
    return await start(app, settings, register_app=False)


@pytest.fixture
async def host() -> AsyncIterator[Host]:
    paid.clear()
    running = await serve(payouts)
    yield running
    await running.stop(0)


@pytest.fixture
async def stub(host: Host) -> AsyncIterator[FunctionHostAsyncStub]:
    async with aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        yield FunctionHostStub(channel)


def worker_frame(invocation_id: int, start: pb.Start | pb.SignedStart) -> pb.WorkerFrame:
    if isinstance(start, pb.SignedStart):
        return pb.WorkerFrame(invocation_id=invocation_id, signed_start=start)
    return pb.WorkerFrame(invocation_id=invocation_id, start=start)


def answers(response: object) -> list[tuple[pb.HostFrame, pb.SignedFrame | None]]:
    """A response's frames (each with its invocation id), a signed one with its bytes."""
    assert isinstance(response, pb.InvokeResponse)
    found: list[tuple[pb.HostFrame, pb.SignedFrame | None]] = [
        (frame, None) for frame in response.frames
    ]
    for signed in response.signed:
        frame = pb.HostFrame.FromString(signed.frame)
        frame.invocation_id = signed.invocation_id
        found.append((frame, signed))
    return found


async def finals(
    stub: FunctionHostAsyncStub, *starts: pb.Start | pb.SignedStart, key: str = KEY
) -> list[pb.HostFrame]:
    """Send each Start on one new stream, ack every step, and return each one's final frame
    (in the order they end)."""
    return [frame for frame, _ in await signed_finals(stub, *starts, key=key)]


async def signed_finals(
    stub: FunctionHostAsyncStub, *starts: pb.Start | pb.SignedStart, key: str = KEY
) -> list[tuple[pb.HostFrame, pb.SignedFrame | None]]:
    call = stub.Invoke(metadata=header(key))
    frames = [worker_frame(i, s) for i, s in enumerate(starts, 1)]
    await call.write(pb.InvokeRequest(frames=frames))
    ended: list[tuple[pb.HostFrame, pb.SignedFrame | None]] = []
    while len(ended) < len(starts):
        for frame, signed in answers(await call.read()):
            if frame.WhichOneof("message") == "step":
                ack = pb.Ack(step_id=frame.step.step_id, result=pb.ACK_RESULT_CONTINUE)
                invocation = frame.invocation_id
                await call.write(
                    pb.InvokeRequest(frames=[pb.WorkerFrame(invocation_id=invocation, ack=ack)])
                )
            else:
                ended.append((frame, signed))
    call.cancel()
    return ended


def refusal(frame: pb.HostFrame) -> str:
    assert frame.WhichOneof("message") == "failed", frame
    assert frame.failed.error.type == "Unauthenticated"
    assert frame.failed.retriable
    return frame.failed.error.message


async def test_a_signed_start_runs_and_every_answer_carries_its_mac(
    stub: FunctionHostAsyncStub, host: Host
) -> None:
    start = sign_start(a_start("run-1"), KEY, payouts.id, host.address)
    call = stub.Invoke(metadata=header())
    await call.write(pb.InvokeRequest(frames=[worker_frame(1, start)]))
    step = answers(await call.read())
    ack = pb.Ack(step_id="transfer", result=pb.ACK_RESULT_CONTINUE)
    await call.write(pb.InvokeRequest(frames=[pb.WorkerFrame(invocation_id=1, ack=ack)]))
    final = answers(await call.read())
    call.cancel()

    key = Keyring(KEY).current
    frames = [*step, *final]
    assert [frame.WhichOneof("message") for frame, _ in frames] == ["step", "completed"]
    nonce = nonce_of(start)
    for sequence, (_, signed) in enumerate(frames):
        assert signed is not None
        assert key.verifies(answer_prefix(nonce, sequence) + signed.frame, signed.mac)
    # Bound to its place: the first frame's MAC does not sign the second place.
    first = frames[0][1]
    assert first is not None
    assert not key.verifies(answer_prefix(nonce, 1) + first.frame, first.mac)
    assert paid["run-1"] == 999999


async def test_a_captured_start_replayed_is_refused(
    stub: FunctionHostAsyncStub, host: Host
) -> None:
    captured = sign_start(a_start("run-2"), KEY, payouts.id, host.address)
    (first,) = await finals(stub, captured)
    assert first.WhichOneof("message") == "completed"
    with capture_logs() as logs:
        (replayed,) = await finals(stub, captured)  # on a new stream, with a fresh header
    assert "replayed Start" in refusal(replayed)
    assert paid["run-2"] == 999999  # paid once
    (entry,) = [entry for entry in logs if entry["event"] == "refused a Start"]
    assert entry["run_id"] == "run-2" and entry["peer"].startswith("ipv4:127.0.0.1")
    assert "replayed" in entry["reason"]
    assert KEY not in repr(logs)


async def test_a_forged_memo_is_refused(stub: FunctionHostAsyncStub, host: Host) -> None:
    signed = sign_start(a_start("run-3"), KEY, payouts.id, host.address)
    forged = altered(signed, lambda start: start.memo.add(step_id="transfer", output=b'"x"'))
    (frame,) = await finals(stub, forged)
    assert "invalid MAC" in refusal(frame)
    assert "run-3" not in paid


async def test_a_changed_event_or_attempt_is_refused(
    stub: FunctionHostAsyncStub, host: Host
) -> None:
    def cheaper(start: pb.Start) -> None:
        start.events[0].data = b'{"amount": 1}'

    def later(start: pb.Start) -> None:
        start.attempt = 3

    def elsewhere(start: pb.Start) -> None:
        start.step_attempts["transfer"] = 2  # nothing of a signed Start is outside its MAC

    changed = [
        altered(sign_start(a_start(f"run-{n}"), KEY, payouts.id, host.address), change)
        for n, change in ((4, cheaper), (5, later), (16, elsewhere))
    ]
    for frame in await finals(stub, *changed):
        assert "invalid MAC" in refusal(frame)
    assert not paid


async def test_a_captured_start_replayed_to_a_second_host_of_the_app_is_refused(
    host: Host,
) -> None:
    captured = sign_start(a_start("run-15"), KEY, payouts.id, host.address)
    second = await serve(payouts)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            (frame,) = await finals(FunctionHostStub(channel), captured)
    finally:
        await second.stop(0)
    assert f"the Start is for the host at {host.address!r}" in refusal(frame)
    assert not paid


async def test_a_start_for_one_app_is_refused_by_the_host_of_another() -> None:
    host_b = await serve(other)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{host_b.port}") as channel:
            start = sign_start(a_start("r6"), KEY, "payouts", host_b.address)
            (frame,) = await finals(FunctionHostStub(channel), start)
    finally:
        await host_b.stop(0)
    assert "the Start is for app 'payouts', this host serves 'other-app'" in refusal(frame)
    assert not paid


async def test_a_stale_or_unsigned_start_is_refused(
    stub: FunctionHostAsyncStub, host: Host
) -> None:
    stale_ms = time.time_ns() // 1_000_000 - 301_000
    stale = sign_start(a_start("run-7"), KEY, payouts.id, host.address, signed_at_ms=stale_ms)
    unsigned = a_start("run-8")
    short_nonce = sign_start(a_start("run-9"), KEY, payouts.id, host.address, nonce=b"short")
    problems = [refusal(frame) for frame in await finals(stub, stale, unsigned, short_nonce)]
    assert sorted(problems) == sorted(
        [
            "the Start is not authenticated: stale signature (signed_at_ms is outside the"
            " accepted window)",
            "the Start is not authenticated: the Start is not signed",
            "the Start is not authenticated: the nonce must be 16 bytes",
        ]
    )
    assert not paid


async def test_a_refused_start_leaves_the_other_invocations_of_its_stream_alone(
    stub: FunctionHostAsyncStub, host: Host
) -> None:
    good = sign_start(a_start("run-10"), KEY, payouts.id, host.address)
    bad = a_start("run-11")
    ends = {frame.invocation_id: frame for frame in await finals(stub, bad, good)}
    assert "not signed" in refusal(ends[1])
    assert ends[2].completed.output == b'"paid 999999"'


async def test_the_previous_key_is_accepted_during_a_rotation_and_refused_after() -> None:
    rotating = await serve(payouts, signing_key_previous=SecretStr(OLD_KEY))
    try:
        async with aio.insecure_channel(f"127.0.0.1:{rotating.port}") as channel:
            old = sign_start(a_start("run-12"), OLD_KEY, payouts.id, rotating.address)
            ((frame, answered),) = await signed_finals(FunctionHostStub(channel), old, key=OLD_KEY)
    finally:
        await rotating.stop(0)
    assert frame.completed.output == b'"paid 999999"'
    # Answered with the key that signed the Start.
    assert answered is not None
    signed = answer_prefix(nonce_of(old), 1) + answered.frame
    assert Keyring(OLD_KEY).current.verifies(signed, answered.mac)

    rotated = await serve(payouts)  # the previous key removed
    try:
        async with aio.insecure_channel(f"127.0.0.1:{rotated.port}") as channel:
            stub = FunctionHostStub(channel)
            with pytest.raises(aio.AioRpcError) as raised:
                start = sign_start(a_start("run-13"), OLD_KEY, payouts.id, rotated.address)
                await finals(stub, start, key=OLD_KEY)
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
            # Even on a stream admitted with the current key, the old key's Start is refused.
            late = sign_start(a_start("run-14"), OLD_KEY, payouts.id, rotated.address)
            (frame,) = await finals(stub, late)
    finally:
        await rotated.stop(0)
    assert "unknown signing key id" in refusal(frame)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("t=" + "5" * 5000 + ",s=" + "0" * 64, id="5000-digits"),
        pytest.param("t=+1700000000,s=" + "0" * 64, id="signed-number"),
        pytest.param("t=1,s=not-hex", id="not-hex"),
        pytest.param("t=1,s=" + "0" * 64 + ",t=2", id="trailing"),
        pytest.param("garbage", id="garbage"),
    ],
)
async def test_a_malformed_stream_signature_is_refused_and_logged(
    stub: FunctionHostAsyncStub, value: str
) -> None:
    with capture_logs() as logs:
        call = stub.Invoke(metadata=(("x-reverb-signature", value),))
        with pytest.raises(aio.AioRpcError) as raised:
            await call.read()
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "malformed x-reverb-signature" in (raised.value.details() or "")
    (entry,) = [entry for entry in logs if entry["event"] == "refused an unsigned call"]
    assert entry["method"] == SESSION and entry["peer"].startswith("ipv4:127.0.0.1")
    assert value not in repr(logs)


async def test_a_host_without_a_key_refuses_to_start_unless_told_it_is_insecure() -> None:
    with pytest.raises(InsecureHostError, match="REVERB_SIGNING_KEY is not set"):
        await start(payouts, HostSettings(host_address="127.0.0.1:0"), register_app=False)
    insecure = await start(
        payouts, HostSettings(host_address="127.0.0.1:0", host_insecure=True), register_app=False
    )
    await insecure.stop(0)
