"""Reaching an app's function hosts: one cached channel per address, newest host first."""

import asyncio
import time

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


# How long an app's address list is reused before it is read again: a host registered
# meanwhile is preferred from then on. A list whose every host fails is read again at once.
ADDRESSES_TTL_SECONDS = 1.0


class HostUnreachable(Exception):
    """No host of the app could be reached (none registered, or all unavailable)."""


class HostChannels:
    """The worker's gRPC channels to function hosts, keyed by address."""

    def __init__(self, pool: asyncpg.Pool, signing_key: str | None) -> None:
        self._pool = pool
        self._signing_key = signing_key
        self._channels: dict[str, grpc.aio.Channel] = {}
        # app id -> (time.monotonic() when read, addresses newest first)
        self._addresses: dict[str, tuple[float, list[str]]] = {}

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
        addresses, cached = await self._addresses_of(app_id)
        tried: set[str] = set()
        while True:
            for address in addresses:
                if address in tried:
                    continue
                tried.add(address)
                opened = await self._open(address, start, deadline_seconds)
                if opened is not None:
                    return opened
                _log.info("host unavailable, trying the next", app_id=app_id, address=address)
            if not cached:
                break
            # Every host we knew of failed: another may have registered meanwhile.
            addresses, cached = await self._addresses_of(app_id, fresh=True)
        if not addresses:
            raise HostUnreachable(f"no host is registered for app {app_id!r}")
        raise HostUnreachable(f"no host of app {app_id!r} is reachable")

    async def _open(
        self, address: str, start: protocol.Start, deadline_seconds: float
    ) -> tuple[wire.InvokeStream, protocol.HostMessage | None] | None:
        """The stream and its first message; None when the host is UNAVAILABLE."""
        metadata = grpc_metadata() + signature_metadata(self._signing_key, protocol.INVOKE_METHOD)
        stream = wire.open_invoke(self.channel(address), metadata, deadline_seconds)
        try:
            await stream.send_start(start)
            first = await stream.receive()
        except wire.HostStreamError as error:
            stream.cancel()
            if error.code != "UNAVAILABLE":
                raise
            return None
        return stream, first

    async def _addresses_of(self, app_id: str, *, fresh: bool = False) -> tuple[list[str], bool]:
        """The app's addresses, newest first, and whether they came from the cache."""
        now = time.monotonic()
        known = self._addresses.get(app_id)
        if not fresh and known is not None and now - known[0] < ADDRESSES_TTL_SECONDS:
            return known[1], True
        addresses = await host_addresses(self._pool, app_id)
        self._addresses[app_id] = (now, addresses)
        return addresses, False

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(channel.close() for channel in channels))
