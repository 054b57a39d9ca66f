"""One invocation of a claimed run: every step report is committed, then acknowledged.

Reports are handled as they arrive, without a task of their own for a
`step.run` output: it joins the worker's next checkpoint batch, and its ack is
queued on the host session the moment the batch commits (so the acks of one
batch share a message). Other reports (failures, waits) each get a task; log
lines (`ctx.logger`) go to the worker's log writer as they arrive (`moments`), or
nowhere without a sink. The invocation ends with the host's final message, which the
caller makes durable (`finals`).

A step commit is the run's boundary: when it says the run must stop (cancelled, or
its function paused), the step stays committed, its ack is never sent, the host is
told to abandon the invocation, and the invocation ends `Stopped`.
"""

import asyncio
import functools
from dataclasses import dataclass
from datetime import UTC, datetime

from reverb.engine_errors import HOST_ERROR, INVOCATION_TIMEOUT, START_TOO_LARGE
from reverb_queue_worker.database import acquire
from reverb_queue_worker.hosts import protocol
from reverb_queue_worker.hosts.sessions import InvocationChannel
from reverb_queue_worker.hosts.wire import HostStreamError, StartTooLarge
from reverb_queue_worker.moments import RunLog
from reverb_queue_worker.runs.commits import ack_for, commit_step
from reverb_queue_worker.services import Services
from reverb_store.execution import (
    ClaimedRun,
    ErrorRecord,
    OutputCommit,
    StepOutput,
    StopReason,
    stop_reason,
)
from reverb_store.ids import StepId

# gRPC statuses that say nothing about the function: the run is released and retried
# later without counting an attempt. A function's own errors never travel as gRPC
# statuses (the host reports them as RunFailed), and INTERNAL is what the transport
# says when an HTTP/2 stream is reset. Other statuses (UNKNOWN: the host's session
# handler itself crashed; RESOURCE_EXHAUSTED: a message too large for one side, which
# the worker's own check of each Start should have caught) fail the attempt, so a run
# that breaks its host cannot loop forever. A Start that can never fit fails the run
# for good (StartTooLarge), before anything is sent.
_INFRASTRUCTURE = frozenset(
    {
        "UNAVAILABLE",
        "CANCELLED",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "ABORTED",
        "INTERNAL",
    }
)


# Acks after which the function goes on running (other acks wait, or end the invocation).
_GOES_ON = frozenset((protocol.AckResult.CONTINUE, protocol.AckResult.FAILED))


class StreamBroken(Exception):
    """The host could not be reached or went away before a final result."""

    def __init__(self, message: str, *, invoked: bool) -> None:
        super().__init__(message)
        # False when the host never received the Start (no invocation happened).
        self.invoked = invoked


@dataclass(frozen=True, slots=True)
class Stopped:
    """The worker ended the invocation at a step boundary: the run must stop."""

    reason: StopReason


@dataclass(frozen=True, slots=True)
class InvocationEnd:
    final: protocol.Final | Stopped
    # Final steps the host knows of: the memo, plus steps acked CONTINUE or FAILED.
    known_step_ids: frozenset[StepId]


def final_for_error(error: HostStreamError) -> protocol.Failed | None:
    """The attempt's failure a gRPC error stands for; None when the run should be released."""
    if error.code == "DEADLINE_EXCEEDED":
        message = "the invocation ran past the worker's invocation timeout"
        return protocol.Failed(
            ErrorRecord(INVOCATION_TIMEOUT.name, message), retriable=INVOCATION_TIMEOUT.retriable
        )
    if isinstance(error, StartTooLarge):
        return protocol.Failed(
            ErrorRecord(START_TOO_LARGE.name, error.details), retriable=START_TOO_LARGE.retriable
        )
    if error.code in _INFRASTRUCTURE:
        return None
    return protocol.Failed(ErrorRecord(HOST_ERROR.name, str(error)), retriable=HOST_ERROR.retriable)


class Invocation:
    def __init__(
        self,
        services: Services,
        claim: ClaimedRun,
        traceparent: str | None,
        moments: RunLog | None = None,
    ) -> None:
        self._services = services
        self._moments = moments if moments is not None else RunLog(services.logs, claim)
        self._claim = claim
        self._traceparent = traceparent
        self._known: set[StepId] = {entry.step_id for entry in claim.memo}
        self._handlers: set[asyncio.Task[None]] = set()
        # Outputs handed to the checkpoint writer whose ack is not sent yet.
        self._committing = 0
        self._drained: asyncio.Future[None] | None = None
        self._failure: Exception | None = None
        self._stop: StopReason | None = None
        self._step_seconds = services.metrics.step_timer(claim.function_id)

    async def run(self) -> InvocationEnd:
        """Drive the invocation to its final message. Raises StreamBroken or HostUnreachable."""
        claim, timeout = self._claim, self._services.settings.invocation_timeout
        moments = self._moments
        start = protocol.Start(
            run_id=claim.run_id,
            function_id=claim.function_id,
            events=claim.events,
            memo=claim.memo,
            attempt=claim.start_attempt,
            traceparent=self._traceparent,
            deadline=datetime.now(UTC) + timeout,
            step_attempts=claim.step_attempts,
            # With the log sink off the lines would be dropped here: the host sends none.
            log_lines=moments.enabled,
        )
        try:
            channel = await self._services.hosts.open(
                claim.app_id,
                start,
                timeout.total_seconds(),
                self._report,
                moments.user_line if moments.enabled else None,
            )
        except HostStreamError as error:
            failed = final_for_error(error)
            if failed is None:
                raise StreamBroken(str(error), invoked=False) from error
            return InvocationEnd(failed, frozenset(self._known))
        try:
            final = await self._final(channel)
        finally:
            await self._stop_handlers()
            channel.close()
        return InvocationEnd(final, frozenset(self._known))

    async def _final(self, channel: InvocationChannel) -> protocol.Final | Stopped:
        try:
            final = await channel.final()
        except HostStreamError as error:
            if self._stop is not None:
                return Stopped(self._stop)
            if self._failure is not None:
                raise self._failure from error
            failed = final_for_error(error)
            if failed is None:
                raise StreamBroken(str(error), invoked=True) from error
            return failed
        # Finals come after every ack, but make sure no commit is still in flight.
        await self._settled()
        if self._failure is not None:
            raise self._failure
        return final

    def _report(self, channel: InvocationChannel, report: protocol.StepReport) -> None:
        """A step report arrived: commit it, then ack it (see the module docstring)."""
        operation = report.operation
        timing = report.timing
        if (
            isinstance(operation, protocol.Output | protocol.Failure)
            and timing.ended_at is not None
            and timing.started_at is not None
        ):
            # A step.run's attempt: the host timed it.
            self._step_seconds((timing.ended_at - timing.started_at).total_seconds())
        if not isinstance(operation, protocol.Output):
            self._spawn(channel, report)
            return
        output = StepOutput(self._claim.run_id, report.timing, operation.output)
        try:
            future = self._services.checkpoints.submit(output)
        except RuntimeError:
            self._spawn(channel, report)  # reports the writer's state as the failure
            return
        self._committing += 1
        future.add_done_callback(functools.partial(self._output_committed, channel, report))

    def _output_committed(
        self,
        channel: InvocationChannel,
        report: protocol.StepReport,
        future: "asyncio.Future[OutputCommit]",
    ) -> None:
        self._committing -= 1
        failed = future.cancelled() or future.exception() is not None
        if channel.ended:
            pass  # the invocation is over (its host went away): nobody awaits this ack
        elif failed:
            # The full path handles unstorable JSON and reports other failures.
            self._spawn(channel, report)
        else:
            commit = future.result()
            state = commit.state
            if commit.ours and self._moments.steps:
                self._moments.step_completed(report.timing.step_id, report.timing.ended_at)
            if commit.stop is not None:
                self._halt(channel, commit.stop)
            else:
                ack = ack_for(report.timing.step_id, state, None if commit.ours else state.output)
                self._acknowledge(channel, ack)
        if self._committing == 0 and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _halt(self, channel: InvocationChannel, reason: StopReason) -> None:
        """Stop at this boundary: the host abandons the function, nothing more starts."""
        if self._stop != "cancelled":
            self._stop = reason
        channel.cancel()

    def _acknowledge(self, channel: InvocationChannel, ack: protocol.Ack) -> None:
        if ack.result in (protocol.AckResult.CONTINUE, protocol.AckResult.FAILED):
            self._known.add(ack.step_id)
        channel.send_ack(ack)

    def _spawn(self, channel: InvocationChannel, report: protocol.StepReport) -> None:
        task = asyncio.create_task(self._commit(channel, report))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _commit(self, channel: InvocationChannel, report: protocol.StepReport) -> None:
        try:
            ack = await commit_step(self._services, self._claim, self._traceparent, report)
            stop = None
            if ack.result in _GOES_ON:
                # The function would go on to its next step: this commit is a boundary.
                async with acquire(self._services.pool) as connection:
                    stop = await stop_reason(connection, self._claim.run_id)
        except Exception as error:
            if self._failure is None:
                self._failure = error
            channel.cancel()
            return
        if stop is not None:
            self._halt(channel, stop)
        else:
            self._moments.acknowledged(report, ack)
            self._acknowledge(channel, ack)

    async def _settled(self) -> None:
        """Until every report received so far has been committed and acknowledged."""
        while self._committing or self._handlers:
            if self._committing:
                self._drained = asyncio.get_running_loop().create_future()
                await self._drained
            if self._handlers:
                await asyncio.gather(*self._handlers)

    async def _stop_handlers(self) -> None:
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers)
