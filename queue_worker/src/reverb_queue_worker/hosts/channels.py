"""Reaching an app's function hosts: one channel and one Session per address; each
invocation goes to the next live host of its app in turn (round robin over the hosts whose
lease has not ended), falling through to the next one when a host cannot take it."""

import asyncio
import functools
import time

import asyncpg
import grpc
import structlog

from reverb.signing import Keyring
from reverb_queue_worker.hosts import protocol, wire
from reverb_queue_worker.hosts.sessions import (
    HostSession,
    InvocationChannel,
    LogListener,
    ReportListener,
)
from reverb_queue_worker.hosts.signing import signature_metadata
from reverb_store.execution import live_hosts
from reverb_store.ids import AppId

_log = structlog.get_logger("reverb.queue_worker")

# As large as a host accepts by default (REVERB_MAX_MESSAGE_BYTES on the host).
_MESSAGE_LIMIT = 64 * 1024 * 1024
_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
    ("grpc.max_send_message_length", _MESSAGE_LIMIT),
    # A host that restarts on the same address is found again within seconds.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


# How long an app's address list is reused before it is read again: a host registered
# meanwhile gets work from then on. A list whose every host fails is read again at once.
# Within that second an address is still skipped once its lease ends: each is kept with
# the time its lease had left when read.
ADDRESSES_TTL_SECONDS = 1.0

# Failures before the host answered that say this host cannot take the invocation now
# (down, its stream reset, or refusing this worker's signature): the next live host is
# tried. RESOURCE_EXHAUSTED is not one: a Start too large for one host is as large for the
# next, and each refusal would break that host's shared session. CANCELLED is this worker
# giving up (it is stopping). Other failures release the run (`runs.invocation`).
_TRY_NEXT_HOST = frozenset({"UNAVAILABLE", "UNAUTHENTICATED", "PERMISSION_DENIED", "INTERNAL"})


# (address, time.monotonic() when its lease ends), by address
_Leases = list[tuple[str, float]]


class HostUnreachable(Exception):
    """No host of the app could be reached (none registered, or all unavailable)."""


class HostChannels:
    """The worker's gRPC channels to function hosts, keyed by address."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        keyring: Keyring | None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._pool = pool
        self._keyring = keyring
        # TLS credentials (None: plaintext channels).
        self._credentials = credentials
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._sessions: dict[str, HostSession] = {}
        # app id -> (time.monotonic() when read, [(address, time.monotonic() its lease ends)])
        self._addresses: dict[str, tuple[float, _Leases]] = {}
        # app id -> the read in flight, which concurrent invocations share
        self._reading: dict[str, asyncio.Future[_Leases]] = {}
        # app id -> invocations started on it: where the next one starts its round
        self._turns: dict[str, int] = {}

    def channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
            else:
                channel = grpc.aio.secure_channel(
                    address, self._credentials, options=_CHANNEL_OPTIONS
                )
            self._channels[address] = channel
        return channel

    def open_sessions(self) -> int:
        """How many sessions with hosts are open (not broken)."""
        return sum(1 for session in list(self._sessions.values()) if session.broken is None)

    def session(self, address: str) -> HostSession:
        """The session with the host at `address`, opened anew if there is none or it broke."""
        session = self._sessions.get(address)
        if session is None or session.broken is not None:
            keyring = self._keyring
            key = keyring.current.secret.decode() if keyring is not None else None
            metadata = signature_metadata(key, protocol.SESSION_METHOD)
            stream = wire.open_session(self.channel(address), metadata)
            session = HostSession(stream, _MESSAGE_LIMIT, keyring, address)
            self._sessions[address] = session
        return session

    async def open(
        self,
        app_id: AppId,
        start: protocol.Start,
        timeout_seconds: float,
        listener: ReportListener,
        log_listener: LogListener | None = None,
    ) -> InvocationChannel:
        """Start the invocation on the app's next live host that answers.

        Step reports go to `listener` from the first one on (log lines to
        `log_listener`). A host failing as infrastructure (`_TRY_NEXT_HOST`) is skipped
        for the next one. Other gRPC errors are raised (`wire.HostStreamError`).
        """
        addresses, cached = await self._addresses_of(app_id)
        tried: set[str] = set()
        while True:
            for address in self._round(app_id, addresses):
                if address in tried:
                    continue
                tried.add(address)
                channel = self.session(address).start(
                    app_id, start, timeout_seconds, listener, log_listener
                )
                try:
                    await channel.started()
                except wire.HostStreamError as error:
                    if error.code not in _TRY_NEXT_HOST:
                        raise
                    _log.info(
                        "host cannot take the invocation, trying the next",
                        app_id=app_id,
                        address=address,
                        code=error.code,
                    )
                    continue
                return channel
            if not cached:
                break
            # Every host we knew of failed: another may have registered meanwhile.
            addresses, cached = await self._addresses_of(app_id, fresh=True)
        if not addresses:
            raise HostUnreachable(f"no live host is registered for app {app_id!r}")
        raise HostUnreachable(f"no host of app {app_id!r} is reachable")

    def _round(self, app_id: AppId, addresses: list[str]) -> list[str]:
        """`addresses` from the one whose turn it is, so that each live host gets work."""
        if len(addresses) < 2:
            return addresses
        turn = self._turns.get(app_id, 0)
        self._turns[app_id] = turn + 1
        first = turn % len(addresses)
        return addresses[first:] + addresses[:first]

    async def _addresses_of(self, app_id: AppId, *, fresh: bool = False) -> tuple[list[str], bool]:
        """The app's addresses whose lease has not ended, and whether they came from the
        cache (a cached list whose every lease ended is read again)."""
        now = time.monotonic()
        known = self._addresses.get(app_id)
        if not fresh and known is not None and now - known[0] < ADDRESSES_TTL_SECONDS:
            live = [address for address, ends in known[1] if ends > now]
            if live or not known[1]:
                return live, True
        reading = self._reading.get(app_id)
        if reading is None:
            reading = asyncio.ensure_future(self._read_addresses(app_id))
            self._reading[app_id] = reading
            reading.add_done_callback(functools.partial(self._read_done, app_id))
        leases = await asyncio.shield(reading)
        return [address for address, _ in leases], False

    def _read_done(self, app_id: AppId, reading: "asyncio.Future[_Leases]") -> None:
        self._reading.pop(app_id, None)
        if not reading.cancelled():
            reading.exception()  # seen: its awaiters got it

    async def _read_addresses(self, app_id: AppId) -> "_Leases":
        # Taken before the query: a lease is taken to end no later than it does.
        read_at = time.monotonic()
        hosts = await live_hosts(self._pool, app_id)
        leases = [(host.address, read_at + host.remaining_seconds) for host in hosts]
        self._addresses[app_id] = (read_at, leases)
        return leases

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(session.close() for session in sessions))
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(channel.close() for channel in channels))
