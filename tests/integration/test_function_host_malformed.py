"""Bytes that are not protobuf, sent to a function host: INVALID_ARGUMENT, said plainly."""

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio
from pydantic import SecretStr

import reverb
from reverb import Context, event
from reverb_function_host import Host, HostSettings
from reverb_function_host import start as start_host

app = reverb.App("malformed-tests")
# A length-delimited field whose length runs past the end of the message.
MALFORMED = b"\x0a\xff\xff\xff\xff\x0f"


@app.function("noop", trigger=event("test.noop"))
async def noop(ctx: Context) -> None:
    return None


@pytest.fixture
async def host() -> AsyncIterator[Host]:
    running = await start_host(
        app, HostSettings(host_address="127.0.0.1:0", host_insecure=True), register_app=False
    )
    yield running
    await running.stop(0)


def raw_unary(channel: aio.Channel, method: str) -> aio.UnaryUnaryMultiCallable[bytes, bytes]:
    """A call sending and receiving bytes as they are (no protobuf on this side)."""
    return channel.unary_unary(method)


def raw_stream(channel: aio.Channel, method: str) -> aio.StreamStreamMultiCallable[bytes, bytes]:
    return channel.stream_stream(method)


def assert_plain_invalid_argument(error: aio.AioRpcError, method: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert error.details() == f"the request to {method} is not a valid protobuf message"


async def test_a_malformed_describe_is_an_invalid_argument(host: Host) -> None:
    method = "/reverb.v1.FunctionHost/Describe"
    async with aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        with pytest.raises(aio.AioRpcError) as raised:
            await raw_unary(channel, method)(MALFORMED, timeout=10)
    assert_plain_invalid_argument(raised.value, method)


async def test_a_malformed_session_message_is_an_invalid_argument(host: Host) -> None:
    method = "/reverb.v1.FunctionHost/Invoke"
    async with aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
        call: aio.StreamStreamCall[bytes, bytes] = raw_stream(channel, method)(timeout=10)
        await call.write(MALFORMED)
        with pytest.raises(aio.AioRpcError) as raised:
            await call.read()
    assert_plain_invalid_argument(raised.value, method)


async def test_an_unsigned_malformed_call_is_refused_before_it_is_read() -> None:
    settings = HostSettings(host_address="127.0.0.1:0", signing_key=SecretStr("secret"))
    host = await start_host(app, settings, register_app=False)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            describe = raw_unary(channel, "/reverb.v1.FunctionHost/Describe")
            with pytest.raises(aio.AioRpcError) as raised:
                await describe(MALFORMED, timeout=10)
    finally:
        await host.stop(0)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
