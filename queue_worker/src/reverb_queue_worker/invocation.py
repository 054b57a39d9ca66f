"""One Invoke stream of a claimed run: every step report is committed, then acknowledged.

Reports are handled concurrently (parallel steps share checkpoint batches);
acks go back as each commit lands. The conversation ends with the host's
final message, which the caller makes durable (`finals`).
"""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from reverb_queue_worker import protocol
from reverb_queue_worker.commits import commit_step
from reverb_queue_worker.services import Services
from reverb_queue_worker.wire import HostStreamError, InvokeStream
from reverb_store.execution import ClaimedRun, ErrorRecord

# gRPC statuses that say nothing about the function: the run is released and retried
# later without counting an attempt. A function's own errors never travel as gRPC
# statuses (the host reports them as RunFailed), and INTERNAL is what the transport
# says when an HTTP/2 stream is reset (e.g. a host refusing a call while the Start is
# still being written). Other statuses (UNKNOWN: the host itself crashed on the call)
# fail the attempt, so a run that breaks its host cannot loop forever.
_INFRASTRUCTURE = frozenset(
    {
        "UNAVAILABLE",
        "CANCELLED",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "ABORTED",
        "INTERNAL",
    }
)


class StreamBroken(Exception):
    """The host could not be reached or went away before a final result."""

    def __init__(self, message: str, *, invoked: bool) -> None:
        super().__init__(message)
        # False when the host never received the Start (no invocation happened).
        self.invoked = invoked


@dataclass(frozen=True, slots=True)
class InvocationEnd:
    final: protocol.Final
    # Final steps the host knows of: the memo, plus steps acked CONTINUE or FAILED.
    known_step_ids: frozenset[str]


def final_for_error(error: HostStreamError) -> protocol.Failed | None:
    """The attempt's failure a gRPC error stands for; None when the run should be released."""
    if error.code == "DEADLINE_EXCEEDED":
        message = "the invocation ran past the worker's invocation timeout"
        return protocol.Failed(ErrorRecord("InvocationTimeout", message), retriable=True)
    if error.code in _INFRASTRUCTURE:
        return None
    return protocol.Failed(ErrorRecord("HostError", str(error)), retriable=True)


class Invocation:
    def __init__(self, services: Services, claim: ClaimedRun, traceparent: str | None) -> None:
        self._services = services
        self._claim = claim
        self._traceparent = traceparent
        self._known = {entry.step_id for entry in claim.memo}
        self._handlers: set[asyncio.Task[None]] = set()
        self._failure: Exception | None = None

    async def run(self) -> InvocationEnd:
        """Drive the stream to its final message. Raises StreamBroken or HostUnreachable."""
        claim, timeout = self._claim, self._services.settings.invocation_timeout
        start = protocol.Start(
            run_id=claim.run_id,
            function_id=claim.function_id,
            events=claim.events,
            memo=claim.memo,
            attempt=claim.start_attempt,
            traceparent=self._traceparent,
            deadline=datetime.now(UTC) + timeout,
        )
        try:
            stream, first = await self._services.hosts.open(
                claim.app_id, start, timeout.total_seconds()
            )
        except HostStreamError as error:
            failed = final_for_error(error)
            if failed is None:
                raise StreamBroken(str(error), invoked=False) from error
            return InvocationEnd(failed, frozenset(self._known))
        try:
            final = await self._converse(stream, first)
        finally:
            await self._stop_handlers()
            await stream.close()
        return InvocationEnd(final, frozenset(self._known))

    async def _converse(
        self, stream: InvokeStream, message: protocol.HostMessage | None
    ) -> protocol.Final:
        try:
            while isinstance(message, protocol.StepReport):
                self._spawn(stream, message)
                message = await stream.receive()
        except HostStreamError as error:
            if self._failure is not None:
                raise self._failure from error
            failed = final_for_error(error)
            if failed is None:
                raise StreamBroken(str(error), invoked=True) from error
            return failed
        if message is None:
            raise StreamBroken("the host ended the stream without a result", invoked=True)
        # Finals come after every ack, but make sure no commit is still in flight.
        await asyncio.gather(*self._handlers)
        if self._failure is not None:
            raise self._failure
        return message

    def _spawn(self, stream: InvokeStream, report: protocol.StepReport) -> None:
        task = asyncio.create_task(self._acknowledge(stream, report))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _acknowledge(self, stream: InvokeStream, report: protocol.StepReport) -> None:
        try:
            ack = await commit_step(self._services, self._claim, self._traceparent, report)
            if ack.result in (protocol.AckResult.CONTINUE, protocol.AckResult.FAILED):
                self._known.add(report.timing.step_id)
            await stream.send_ack(ack)
        except HostStreamError:
            return  # the reading side sees the same error
        except Exception as error:
            if self._failure is None:
                self._failure = error
            stream.cancel()

    async def _stop_handlers(self) -> None:
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers)
