"""The worker's spans (a fan-out, a run, its advances and its waits), made only when spans
are exported.

Without an exporter a span would cost CPU for nothing: the job's traceparent is
passed on as it is, so the trace still joins up once an exporter is added.
A run's span and its waits' are made after the fact, with their real start
(`reverb_telemetry.runs`): a run or a sleep may outlast every process that saw it begin.
"""

import contextlib
from collections.abc import Iterator, Mapping
from datetime import datetime

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from reverb_store.execution import ClaimedRun, ErrorRecord
from reverb_telemetry import (
    context_from_traceparent,
    current_traceparent,
    record_error,
    spans_exported,
)
from reverb_telemetry.runs import run_context, run_span
from reverb_telemetry.spans import Tracer

_tracer = Tracer("reverb.queue_worker")


@contextlib.contextmanager
def job_span(
    name: str,
    traceparent: str | None,
    attributes: Mapping[str, AttributeValue],
    *,
    run_id: str | None = None,
) -> Iterator[trace.Span]:
    """A span under `traceparent` (under the run's span when `run_id` is given) when spans
    are exported, else a span that records nothing."""
    if not spans_exported():
        yield trace.INVALID_SPAN
        return
    parent = (
        context_from_traceparent(traceparent)
        if run_id is None
        else run_context(run_id, traceparent)
    )
    span = _tracer.start_span(name, context=parent, attributes=attributes)
    with trace.use_span(span, end_on_exit=True):
        yield span


def traceparent_within(traceparent: str | None) -> str | None:
    """The traceparent to pass on from inside a `job_span` begun under `traceparent`."""
    if not spans_exported():
        return traceparent
    return current_traceparent() or traceparent


def waits_resolved(claim: ClaimedRun) -> None:
    """A span per wait the claim resolved (a sleep that ended, an invoke that timed out),
    from when the step began waiting until now, under the run's span."""
    if not claim.resolved_waits or not spans_exported():
        return
    parent = run_context(claim.run_id, claim.traceparent)
    for wait in claim.resolved_waits:
        span = _tracer.start_span(
            f"{wait.kind} {wait.name}",
            context=parent,
            attributes={
                "reverb.run.id": claim.run_id,
                "reverb.function.id": claim.function_id,
                "reverb.step.id": wait.step_id,
            },
            start_time=_nanoseconds(wait.started_at),
        )
        if wait.error is not None:
            record_error(span, wait.error.type, wait.error.message, wait.error.stack)
        span.end()


def run_ended(claim: ClaimedRun, status: str, error: ErrorRecord | None = None) -> None:
    """The run's span, from the run's creation until now: it ended with `status`."""
    if not spans_exported():
        return
    attributes: dict[str, AttributeValue] = {
        "reverb.run.id": claim.run_id,
        "reverb.function.id": claim.function_id,
        "reverb.run.status": status,
        "reverb.attempt": claim.attempt,
    }
    if claim.events:
        attributes["reverb.event.id"] = claim.events[0].id
        attributes["reverb.event.name"] = claim.events[0].name
    span = run_span(
        _tracer, claim.run_id, claim.traceparent, f"run {claim.function_id}", attributes
    )
    if span is None:
        return
    if error is not None:
        record_error(span, error.type, error.message, error.stack)
    span.end()


def _nanoseconds(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1e9)
