"""The log documents the worker records at each notable moment of an event or a run.

Documents go to the worker's `LogWriter` (`services.logs`), which writes them in batches
off the run's path (`reverb_store.logs.writer`). A `RunLog` is made once per invocation
with what every document of the run carries (its ids, its trace), so a moment on the
step path costs one small object and an append.
"""

from datetime import UTC, datetime

from reverb_queue_worker.hosts import protocol
from reverb_store.execution import ClaimedRun, ErrorRecord
from reverb_store.ids import EventId, StepId
from reverb_store.logs import (
    EVENT_DEAD_LETTERED,
    EVENT_RECEIVED,
    EVENT_SENT,
    HOST_UNREACHABLE,
    RETRY_SCHEDULED,
    RUN_COMPLETED,
    RUN_DEAD_LETTERED,
    RUN_FAILED,
    RUN_STARTED,
    SLEEP_STARTED,
    STEP_COMPLETED,
    STEP_FAILED,
    USER,
    WAIT_RESOLVED,
    Level,
    LogDocument,
    LogWriter,
    new_log_id,
    trace_ids,
)


class RunLog:
    """Records the moments of one claimed run."""

    __slots__ = (
        "_attempt",
        "_event_id",
        "_event_name",
        "_function_id",
        "_logs",
        "_run_attempt",
        "_run_id",
        "_span_id",
        "_step_attempts",
        "_trace_id",
        "enabled",
        "steps",
    )

    def __init__(self, logs: LogWriter, claim: ClaimedRun) -> None:
        self._logs = logs
        self.enabled = logs.enabled
        # Completed step.run outputs are documents only when asked (`LogWriter`).
        self.steps = logs.step_documents
        first = claim.events[0] if claim.events else None
        self._event_id = None if first is None else first.id
        self._event_name = None if first is None else first.name
        self._run_id = claim.run_id
        self._function_id = claim.function_id
        self._attempt = claim.start_attempt
        self._run_attempt = claim.attempt
        self._step_attempts = claim.step_attempts
        self._trace_id, self._span_id = trace_ids(claim.traceparent)

    def record(
        self,
        level: Level,
        kind: str,
        message: str,
        *,
        step_id: StepId | None = None,
        error: ErrorRecord | None = None,
        fields: str | None = None,
        at: datetime | None = None,
        attempt: int | None = None,
    ) -> None:
        if not self.enabled:
            return
        self._logs.record(
            LogDocument(
                new_log_id(),
                at or datetime.now(UTC),
                level,
                kind,
                message,
                self._event_id,
                self._event_name,
                self._run_id,
                self._function_id,
                step_id,
                self._attempt if attempt is None else attempt,
                error,
                fields,
                self._trace_id,
                self._span_id,
            )
        )

    def user_line(self, line: protocol.LogLine) -> None:
        """A line the function logged: the step's attempt (its failures so far), or the
        run's at function level."""
        step_id = line.step_id
        attempt = self._run_attempt if step_id is None else self._step_attempts.get(step_id, 0)
        self._logs.record(
            LogDocument(
                new_log_id(),
                line.at or datetime.now(UTC),
                line.level,
                USER,
                line.message,
                self._event_id,
                self._event_name,
                self._run_id,
                self._function_id,
                step_id,
                attempt,
                None,
                line.fields,
                self._trace_id,
                self._span_id,
            )
        )

    def started(self, claim: ClaimedRun) -> None:
        if claim.invocations == 1:
            self.record("info", RUN_STARTED, "run started", attempt=claim.attempt)
        else:
            self.record("info", WAIT_RESOLVED, "run resumed", attempt=claim.attempt)

    def acknowledged(self, report: protocol.StepReport, ack: protocol.Ack) -> None:
        """A step report other than a batched output was committed and answered."""
        if not self.enabled:
            return
        operation, step_id = report.operation, report.timing.step_id
        result = ack.result
        if isinstance(operation, protocol.Failure) or result is protocol.AckResult.FAILED:
            error = ack.error or getattr(operation, "error", None)
            self.step_failed(step_id, error, retrying=result is protocol.AckResult.RETRY_LATER)
        elif isinstance(operation, protocol.Sleep):
            self.sleep_started(step_id, operation.wake_at)
        elif isinstance(operation, protocol.SendEvents):
            self.events_sent(step_id, len(operation.events))
        elif (
            isinstance(operation, protocol.Output)
            and result is protocol.AckResult.CONTINUE
            and self.steps
        ):
            self.step_completed(step_id, report.timing.ended_at)

    def step_completed(self, step_id: StepId, at: datetime | None) -> None:
        self.record("info", STEP_COMPLETED, "step completed", step_id=step_id, at=at)

    def step_failed(self, step_id: StepId, error: ErrorRecord | None, *, retrying: bool) -> None:
        if retrying:
            self.record(
                "warning",
                RETRY_SCHEDULED,
                "step failed, retry scheduled",
                step_id=step_id,
                error=error,
            )
        else:
            self.record("error", STEP_FAILED, "step failed", step_id=step_id, error=error)

    def sleep_started(self, step_id: StepId, wake_at: datetime) -> None:
        self.record(
            "info", SLEEP_STARTED, f"sleep started, until {wake_at.isoformat()}", step_id=step_id
        )

    def events_sent(self, step_id: StepId, count: int) -> None:
        noun = "event" if count == 1 else "events"
        self.record("info", EVENT_SENT, f"{count} {noun} sent", step_id=step_id)

    def completed(self) -> None:
        self.record("info", RUN_COMPLETED, "run completed")

    def retrying(self, error: ErrorRecord, attempt: int) -> None:
        self.record(
            "warning", RETRY_SCHEDULED, "run failed, retry scheduled", error=error, attempt=attempt
        )

    def failed(self, error: ErrorRecord, attempt: int) -> None:
        """The run failed for good: failed, and dead-lettered."""
        self.record("error", RUN_FAILED, "run failed", error=error, attempt=attempt)
        self.record(
            "error",
            RUN_DEAD_LETTERED,
            "run dead-lettered: it failed for good",
            error=error,
            attempt=attempt,
        )

    def host_unreachable(self, reason: str) -> None:
        self.record("warning", HOST_UNREACHABLE, f"host unreachable, run released: {reason}")


def event_received(
    logs: LogWriter, event_id: EventId, event_name: str, runs: int, traceparent: str | None
) -> None:
    if not logs.enabled:
        return
    trace_id, span_id = trace_ids(traceparent)
    noun = "run" if runs == 1 else "runs"
    logs.record(
        LogDocument(
            new_log_id(),
            datetime.now(UTC),
            "info",
            EVENT_RECEIVED,
            f"event received, {runs} {noun} triggered",
            event_id=event_id,
            event_name=event_name,
            trace_id=trace_id,
            span_id=span_id,
        )
    )


def job_dead_lettered(logs: LogWriter, kind: str, payload: bytes) -> None:
    """A job whose payload cannot be read is dropped: its event or run is dead-lettered."""
    if not logs.enabled:
        return
    text = payload[:200].decode("utf-8", "replace")
    is_event = kind == "process_event"
    logs.record(
        LogDocument(
            new_log_id(),
            datetime.now(UTC),
            "error",
            EVENT_DEAD_LETTERED if is_event else RUN_DEAD_LETTERED,
            f"{'event' if is_event else 'run'} dead-lettered: its {kind} job is malformed",
            error=ErrorRecord("MalformedJob", f"{kind} job payload: {text}"),
        )
    )
