"""One Session stream per host: many invocations multiplexed, their frames batched.

A `HostSession` owns one FunctionHost.Session call. Its writer sends every frame
queued since its last write in one message (so the acks of a whole checkpoint
batch travel together); its reader hands each frame to the invocation it names.
An `InvocationChannel` is one invocation's view of its session: step reports go to
a callback as they arrive (no task wakes per step), log lines to another, the final
message to `final()`.
When the session breaks, every invocation on it fails with the same error.

With a keyring, every Start goes with a fresh nonce and is signed as it is written, and
every frame the host answers with must come signed, as its bytes and the MAC the
invocation expects (its Start's key and nonce, and its place in the invocation): a frame
that does not is never parsed or handed on, and the invocation ends as `Unauthenticated`
(docs/architecture.md).

Before its first write, the writer reads the largest message the host accepts (the
stream's initial metadata); a Start that cannot fit in the smaller of that and the
worker's own limit is never sent: its invocation fails with `StartTooLarge` (the run
fails for good), and the stream, shared with other runs, is left as it is.
"""

import asyncio
import contextlib
import hmac
import itertools
from collections.abc import Callable
from typing import Any

import structlog

from reverb.engine_errors import UNAUTHENTICATED
from reverb.signing import Keyring, SigningKey, new_nonce
from reverb_queue_worker.hosts import protocol
from reverb_queue_worker.hosts.wire import (
    DEFAULT_RECEIVE_LIMIT,
    HostStreamError,
    ReceivedFrame,
    SessionStream,
    StartTooLarge,
    check_start,
    session_requests,
    signed_message,
)
from reverb_store.execution import ErrorRecord
from reverb_store.ids import AppId

_log = structlog.get_logger("reverb.queue_worker")

# A batch is split into messages of about this size; one larger frame goes alone.
BATCH_BYTES = 1024 * 1024
# How long the writer waits for the host to say how large a message it accepts (a host
# that does not say is taken to keep gRPC's default).
RECEIVE_LIMIT_WAIT_SECONDS = 2.0

# Called with each step report of an invocation, as it arrives.
ReportListener = Callable[["InvocationChannel", protocol.StepReport], None]
# Called with each line the function logged (`ctx.logger`), as it arrives.
LogListener = Callable[[protocol.LogLine], None]


def _retrieve(future: "asyncio.Future[Any]") -> None:
    """Mark a future's exception as seen (nobody may await a failed invocation's start)."""
    if not future.cancelled():
        future.exception()


class InvocationChannel:
    """One invocation on a session: reports to `listener`, then one final message."""

    def __init__(
        self,
        session: "HostSession",
        invocation_id: int,
        listener: ReportListener,
        nonce: bytes = b"",
        key: SigningKey | None = None,
        log_listener: LogListener | None = None,
    ) -> None:
        self._session = session
        self._id = invocation_id
        self._listener = listener
        # None: log lines are not kept (no log sink).
        self._log_listener = log_listener
        # The MACs every answer must carry, by the key the Start was signed with (None:
        # answers are not checked).
        self._macs = key.answers(nonce) if key is not None else None
        self._sequence = 0
        loop = asyncio.get_running_loop()
        self._started: asyncio.Future[None] = loop.create_future()
        self._final: asyncio.Future[protocol.Final] = loop.create_future()
        self._started.add_done_callback(_retrieve)
        self._final.add_done_callback(_retrieve)
        self._timer: asyncio.TimerHandle | None = None

    def expire_after(self, seconds: float) -> None:
        """Give up on the invocation after `seconds` (DEADLINE_EXCEEDED, the host is told)."""
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    async def started(self) -> None:
        """Until the host answered this invocation (raises HostStreamError if it cannot)."""
        await asyncio.shield(self._started)

    async def final(self) -> protocol.Final:
        """The invocation's final message (raises HostStreamError if the session broke)."""
        return await asyncio.shield(self._final)

    @property
    def ended(self) -> bool:
        """Whether the invocation is over (its final message came, or it failed)."""
        return self._final.done()

    def send_ack(self, ack: protocol.Ack) -> None:
        if not self._final.done():
            self._session.send(self._id, ack)

    def cancel(self) -> None:
        """Abandon the invocation: the host stops it; `final()` raises CANCELLED."""
        self._end(HostStreamError("CANCELLED", "the invocation was cancelled"))

    def close(self) -> None:
        """Forget the invocation; the host is told to abandon it if it had not ended."""
        self._end(HostStreamError("CANCELLED", "the invocation was closed"))

    # Called by the session.

    def receive(self, frame: ReceivedFrame) -> None:
        """A frame from the host: handed on if its MAC holds (or answers are unchecked);
        a signed frame's bytes are parsed only then."""
        if self._final.done():
            return
        message = frame.message
        macs = self._macs
        if macs is not None:
            sequence = self._sequence
            self._sequence += 1
            if message is not None:
                self._refuse("missing MAC", message)
                return
            if not hmac.compare_digest(macs.mac(sequence, frame.data), frame.mac):
                self._refuse("invalid MAC", None)
                return
        if message is None:
            message = signed_message(frame.data)
        self.deliver(message)

    def deliver(self, message: protocol.HostMessage) -> None:
        if not self._started.done():
            self._started.set_result(None)
        if isinstance(message, protocol.StepReport):
            if not self._final.done():
                self._listener(self, message)
            return
        if isinstance(message, protocol.LogLine):
            if self._log_listener is not None and not self._final.done():
                self._log_listener(message)
            return
        if not self._final.done():
            self._final.set_result(message)
        self._forget()

    def fail(self, error: HostStreamError) -> None:
        for future in (self._started, self._final):
            if not future.done():
                future.set_exception(error)
        self._forget()

    def _refuse(self, problem: str, message: protocol.HostMessage | None) -> None:
        """A frame without the MAC it needs: nothing it says is used; the invocation ends."""
        _log.warning(
            "refused a host's answer",
            reason=problem,
            peer=self._session.address,
            frame=type(message).__name__ if message is not None else "signed",
        )
        self._session.send(self._id, protocol.Cancel())
        text = f"the host's answer is not authenticated ({problem}): it was not used"
        self.deliver(
            protocol.Failed(
                ErrorRecord(UNAUTHENTICATED.name, text), retriable=UNAUTHENTICATED.retriable
            )
        )

    def _expire(self) -> None:
        message = "the invocation ran past the worker's invocation timeout"
        self._end(HostStreamError("DEADLINE_EXCEEDED", message))

    def _end(self, error: HostStreamError) -> None:
        if not self._final.done():
            self._session.send(self._id, protocol.Cancel())
        self.fail(error)

    def _forget(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._session.forget(self._id)


class HostSession:
    """The worker's Session with one host address."""

    def __init__(
        self,
        stream: SessionStream,
        max_message_bytes: int,
        keyring: Keyring | None = None,
        address: str = "",
    ) -> None:
        self._stream = stream
        self._max_message_bytes = max_message_bytes
        self._keyring = keyring
        self.address = address
        self._invocations: dict[int, InvocationChannel] = {}
        self._ids = itertools.count(1)
        self._outbox: list[tuple[int, protocol.WorkerMessage]] = []
        self._wake: asyncio.Future[None] | None = None
        self.broken: HostStreamError | None = None
        self._writer = asyncio.create_task(self._write_loop(), name="reverb-session-writer")
        self._reader = asyncio.create_task(self._read_loop(), name="reverb-session-reader")

    def start(
        self,
        app_id: AppId,
        start: protocol.Start,
        timeout_seconds: float,
        listener: ReportListener,
        log_listener: LogListener | None = None,
    ) -> InvocationChannel:
        """Begin an invocation of `app_id`'s function; its frames go to `listener` (its log
        lines to `log_listener`) and `final()`."""
        invocation_id = next(self._ids)
        nonce = new_nonce()
        key = self._keyring.current if self._keyring is not None else None
        channel = InvocationChannel(self, invocation_id, listener, nonce, key, log_listener)
        if self.broken is not None:
            channel.fail(self.broken)
            return channel
        self._invocations[invocation_id] = channel
        channel.expire_after(timeout_seconds)
        self.send(invocation_id, protocol.Opening(start, app_id, self.address, nonce))
        return channel

    def send(self, invocation_id: int, message: protocol.WorkerMessage) -> None:
        if self.broken is not None:
            return
        self._outbox.append((invocation_id, message))
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def forget(self, invocation_id: int) -> None:
        self._invocations.pop(invocation_id, None)

    @property
    def invocations(self) -> int:
        return len(self._invocations)

    async def close(self) -> None:
        """End the session: its invocations fail (CANCELLED), the host abandons them."""
        self._break(HostStreamError("CANCELLED", "the worker closed the session"))
        for task in (self._writer, self._reader):
            with contextlib.suppress(asyncio.CancelledError, HostStreamError):
                await task

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            try:
                host_limit = await asyncio.wait_for(
                    self._stream.receive_limit(), RECEIVE_LIMIT_WAIT_SECONDS
                )
            except TimeoutError:
                host_limit = DEFAULT_RECEIVE_LIMIT
            limit = min(self._max_message_bytes, host_limit)
            batch_bytes = min(BATCH_BYTES, limit // 2)
            while self.broken is None:
                if not self._outbox:
                    self._wake = loop.create_future()
                    await self._wake
                    continue
                frames, self._outbox = self._outbox, []
                fitting = self._fitting(frames, limit)
                for request in session_requests(fitting, batch_bytes, self._keyring):
                    await self._stream.write(request)
        except HostStreamError as error:
            self._break(error)

    def _fitting(
        self, frames: list[tuple[int, protocol.WorkerMessage]], limit: int
    ) -> list[tuple[int, protocol.WorkerMessage]]:
        """`frames` without the Starts too large to send (their invocations fail)."""
        kept: list[tuple[int, protocol.WorkerMessage]] | None = None
        for index, (invocation_id, message) in enumerate(frames):
            if isinstance(message, protocol.Opening):
                try:
                    check_start(message.start, limit)
                except StartTooLarge as error:
                    if kept is None:
                        kept = frames[:index]
                    channel = self._invocations.get(invocation_id)
                    if channel is not None:
                        channel.fail(error)
                    continue
            if kept is not None:
                kept.append((invocation_id, message))
        return frames if kept is None else kept

    async def _read_loop(self) -> None:
        try:
            while self.broken is None:
                frames = await self._stream.read()
                if frames is None:
                    self._break(HostStreamError("UNAVAILABLE", "the host ended the session"))
                    return
                invocations = self._invocations
                for frame in frames:
                    channel = invocations.get(frame.invocation_id)
                    if channel is not None:
                        channel.receive(frame)
        except HostStreamError as error:
            self._break(error)

    def _break(self, error: HostStreamError) -> None:
        if self.broken is not None:
            return
        self.broken = error
        self._outbox.clear()
        invocations, self._invocations = self._invocations, {}
        for channel in invocations.values():
            channel.fail(error)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        self._stream.cancel()
