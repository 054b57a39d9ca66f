"""Making one step report durable, and the Ack that says so."""

from datetime import timedelta

import asyncpg

from reverb.engine_errors import INVALID_PAYLOAD, INVALID_WAIT, STEP_ERROR
from reverb_queue_worker.backoff import backoff
from reverb_queue_worker.database import acquire
from reverb_queue_worker.hosts import protocol
from reverb_queue_worker.services import Services
from reverb_store import execution
from reverb_store.execution import ClaimedRun, ErrorRecord, StepKind, StepOutput, StepState
from reverb_store.flow.concurrency import pause_keys
from reverb_store.ids import StepId

# How long an invoke waits for its child when the function gives no timeout.
DEFAULT_INVOKE_TIMEOUT = timedelta(days=365)


_KINDS: dict[type, StepKind] = {
    protocol.Output: "run",
    protocol.Failure: "run",
    protocol.Sleep: "sleep",
    protocol.Invoke: "invoke",
    protocol.SendEvents: "send_event",
    protocol.WaitForEvent: "wait_for_event",
}


def ack_for(step_id: StepId, state: StepState, output: str | None = None) -> protocol.Ack:
    """The Ack for a committed state; `output` is sent when it differs from the host's."""
    if state.status == "completed":
        return protocol.Ack(step_id, protocol.AckResult.CONTINUE, output)
    if state.status == "failed":
        error = state.error or ErrorRecord(STEP_ERROR.name, "the step failed")
        return protocol.Ack(step_id, protocol.AckResult.FAILED, error=error)
    if state.status == "retrying":
        return protocol.Ack(step_id, protocol.AckResult.RETRY_LATER)
    return protocol.Ack(step_id, protocol.AckResult.PENDING)


async def commit_step(
    services: Services, claim: ClaimedRun, traceparent: str | None, report: protocol.StepReport
) -> protocol.Ack:
    """Commit what the report says happened, then say how the host goes on."""
    step_id = report.timing.step_id
    try:
        if isinstance(report.operation, protocol.Output):
            commit = await services.checkpoints.commit(
                StepOutput(claim.run_id, report.timing, report.operation.output)
            )
            return ack_for(step_id, commit.state, None if commit.ours else commit.state.output)
        async with acquire(services.pool) as connection:
            state = await _commit_direct(connection, services, claim, traceparent, report)
    except asyncpg.DataError as error:
        # JSON the database refuses (e.g. a NUL character): the step fails for good.
        invalid = ErrorRecord(INVALID_PAYLOAD.name, f"the step's data cannot be stored: {error}")
        async with acquire(services.pool) as connection:
            state = await _fail_step(connection, claim, report, invalid)
    if isinstance(report.operation, protocol.SendEvents):
        return ack_for(step_id, state, state.output)
    return ack_for(step_id, state, state.output if state.status == "completed" else None)


async def _fail_step(
    connection: asyncpg.Connection,
    claim: ClaimedRun,
    report: protocol.StepReport,
    error: ErrorRecord,
) -> StepState:
    return await execution.record_failure(
        connection,
        claim.run_id,
        report.timing,
        error,
        retriable=False,
        max_attempts=claim.max_attempts,
        retry_delay=lambda _: timedelta(0),
        kind=_KINDS[type(report.operation)],
    )


async def _commit_direct(
    connection: asyncpg.Connection,
    services: Services,
    claim: ClaimedRun,
    traceparent: str | None,
    report: protocol.StepReport,
) -> StepState:
    operation, timing = report.operation, report.timing
    if isinstance(operation, protocol.Failure):
        retry_after, base = operation.retry_after, services.settings.backoff_base
        if operation.pause_key and retry_after is not None:
            # Before the failure's commit, while the run still holds its slots.
            await pause_keys(connection, claim.run_id, retry_after)
        return await execution.record_failure(
            connection,
            claim.run_id,
            timing,
            operation.error,
            retriable=operation.retriable,
            max_attempts=claim.max_attempts,
            retry_delay=lambda attempt: (
                retry_after if retry_after is not None else backoff(attempt, base=base)
            ),
        )
    if isinstance(operation, protocol.Sleep):
        return await execution.record_sleep(connection, claim.run_id, timing, operation.wake_at)
    if isinstance(operation, protocol.Invoke):
        return await execution.start_child(
            connection,
            claim.run_id,
            timing,
            function_id=operation.function_id,
            data=operation.data,
            wait_limit=operation.timeout or DEFAULT_INVOKE_TIMEOUT,
            traceparent=traceparent,
            gates=services.gates,
        )
    if isinstance(operation, protocol.SendEvents):
        return await execution.send_events(
            connection, claim.run_id, timing, operation.events, traceparent
        )
    if isinstance(operation, protocol.WaitForEvent):
        request = execution.WaitRequest(
            operation.conditions,
            operation.timeout or execution.DEFAULT_WAIT_TIMEOUT,
            operation.lookback,
        )
        trigger = claim.events[0] if claim.events else None
        try:
            return await execution.record_wait(
                connection,
                claim.run_id,
                claim.function_id,
                trigger,
                timing,
                request,
                services.wait_keys,
            )
        except execution.WaitRefused as refused:
            error = ErrorRecord(INVALID_WAIT.name, str(refused))
            return await _fail_step(connection, claim, report, error)
    # protocol.Output goes through the checkpoint writer.
    raise AssertionError(f"unexpected step operation {operation!r}")
