"""Reaching an app's function hosts: one cached channel per address, newest host first."""

import asyncio

import asyncpg
import grpc
import structlog

from reverb_queue_worker import protocol, wire
from reverb_queue_worker.signing import signature_metadata
from reverb_store.execution import host_addresses
from reverb_telemetry import grpc_metadata

_log = structlog.get_logger("reverb.queue_worker")

_MESSAGE_LIMIT = 16 * 1024 * 1024
_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
    ("grpc.max_send_message_length", _MESSAGE_LIMIT),
    # A host that restarts on the same address is found again within seconds.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


class HostUnreachable(Exception):
    """No host of the app could be reached (none registered, or all unavailable)."""


class HostChannels:
    """The worker's gRPC channels to function hosts, keyed by address."""

    def __init__(self, pool: asyncpg.Pool, signing_key: str | None) -> None:
        self._pool = pool
        self._signing_key = signing_key
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
            self._channels[address] = channel
        return channel

    async def open(
        self, app_id: str, start: protocol.Start, deadline_seconds: float
    ) -> tuple[wire.InvokeStream, protocol.HostMessage | None]:
        """Open Invoke on the app's newest reachable host; return it with its first message.

        A host answering UNAVAILABLE is skipped for the next one. Other gRPC
        errors are raised (`wire.HostStreamError`).
        """
        addresses = await host_addresses(self._pool, app_id)
        for address in addresses:
            metadata = grpc_metadata() + signature_metadata(
                self._signing_key, protocol.INVOKE_METHOD
            )
            stream = wire.open_invoke(self.channel(address), metadata, deadline_seconds)
            try:
                await stream.send_start(start)
                first = await stream.receive()
            except wire.HostStreamError as error:
                stream.cancel()
                if error.code != "UNAVAILABLE":
                    raise
                _log.info("host unavailable, trying the next", app_id=app_id, address=address)
                continue
            return stream, first
        if not addresses:
            raise HostUnreachable(f"no host is registered for app {app_id!r}")
        raise HostUnreachable(f"no host of app {app_id!r} is reachable")

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(channel.close() for channel in channels))
