"""One worker's Session: its invocations, each an SDK `Execution`, and their frames.

The gRPC servicer (`wire.service`) decodes each message the worker sends into frames
and hands them to `receive`; the session hands what it sends to `send`, which encodes it.
Incoming frames are handled as they are read: a Start begins an execution, an Ack
resolves a step, a Cancel abandons an invocation. Each execution hands its
messages to the session (its sink) the moment they exist; one writer task sends
everything queued since its last write in one message, so the reports of many
runs resumed by one batch of acks travel together. When the worker ends the
session (or goes away), every invocation still running is abandoned.
"""

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

import reverb
from reverb.engine_errors import HOST_ERROR, UNAUTHENTICATED
from reverb.execution import (
    Ack,
    ErrorInfo,
    Execution,
    LogLine,
    Message,
    ProtocolError,
    RunFailed,
)
from reverb.execution import StepReport as Report
from reverb_function_host.frames import Answer, Begin, Cancel, Refused, Seal, WorkerMessage
from reverb_telemetry import context_from_traceparent, record_error, spans_exported
from reverb_telemetry.spans import Tracer

tracer = Tracer("reverb.function_host")
log = structlog.get_logger("reverb.function_host")

Send = Callable[[list[Answer]], Awaitable[None]]
"""Sends frames to the worker, in order; raises once it is gone."""


@dataclass(slots=True)
class _Running:
    execution: Execution
    # The invocation's span, when spans are exported.
    span: trace.Span | None
    # How its answers are signed (None on an insecure host).
    seal: Seal | None


class Session:
    """Runs the invocations of one FunctionHost.Session call."""

    def __init__(self, app: reverb.App, send: Send) -> None:
        self._app = app
        self._send = send
        self._running: dict[int, _Running] = {}
        self._outbox: list[Answer] = []
        self._wake: asyncio.Future[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sending; then `receive` each message's frames, and `close` at the end."""
        self._writer = asyncio.create_task(self._write_loop(), name="reverb-session-writer")

    def receive(self, frames: Iterable[tuple[int, WorkerMessage]]) -> bool:
        """Handle the frames of one message from the worker, in order; False once the
        worker stopped reading (the session is over)."""
        for invocation_id, message in frames:
            self._handle(invocation_id, message)
        return self._writer is not None and not self._writer.done()

    async def close(self) -> None:
        """The worker ended the session (or went away): stop the writer, abandon every
        invocation left, and wait until all of them are done. Its caller shields it
        (`asyncio.shield`): grpc.aio cancels a call's handler again when its peer is
        gone, and an interrupted close would leave these tasks pending, to be destroyed."""
        writer = self._writer
        if writer is not None:
            writer.cancel()
        running, self._running = self._running, {}
        for invocation in running.values():
            self._abandon(invocation)
        tasks = {*self._closing, *(() if writer is None else (writer,))}
        if tasks:
            await asyncio.wait(tasks)

    def _handle(self, invocation_id: int, message: WorkerMessage) -> None:
        if isinstance(message, Ack):
            running = self._running.get(invocation_id)
            if running is None:
                return  # the invocation ended (or was refused) meanwhile
            try:
                running.execution.acknowledge(message)
            except ProtocolError as error:
                self._refuse(invocation_id, str(error))
        elif isinstance(message, Begin):
            self._begin(invocation_id, message)
        elif isinstance(message, Refused):
            # Logged by the check; nothing of the Start runs. A Start refused under an id
            # already running does not disturb that invocation.
            if invocation_id not in self._running:
                info = ErrorInfo(UNAUTHENTICATED.name, message.problem)
                failed = RunFailed(info, retriable=UNAUTHENTICATED.retriable)
                self._emit(invocation_id, failed, message.seal)
        elif isinstance(message, Cancel):
            cancelled = self._running.pop(invocation_id, None)
            if cancelled is not None:
                self._abandon(cancelled)
        else:
            self._refuse(invocation_id, str(message), message.seal)

    def _begin(self, invocation_id: int, begin: Begin) -> None:
        invocation = begin.invocation
        if invocation_id in self._running:
            self._refuse(invocation_id, f"invocation {invocation_id} is already running")
            return
        definition = self._app.functions.get(invocation.function_id)
        if definition is None:
            problem = f"app {self._app.id!r} has no function {invocation.function_id!r}"
            self._emit(invocation_id, _host_error(problem), begin.seal)
            return
        parent = context_from_traceparent(begin.traceparent)
        span: trace.Span | None = None
        step_scope = None
        if spans_exported():
            span = tracer.start_span(
                f"invoke {invocation.function_id}",
                context=parent,
                kind=trace.SpanKind.SERVER,
                attributes={
                    "reverb.run.id": invocation.run_id,
                    "reverb.function.id": invocation.function_id,
                    "reverb.attempt": invocation.attempt,
                },
            )
            parent = trace.set_span_in_context(span, parent)
            step_scope = functools.partial(_StepSpan, begin.step_attempts)
        # Without an exporter no span is made (one per step would cost more than the rest
        # of the step's engine work); the function still runs in the caller's trace.
        execution = Execution(
            definition,
            invocation,
            step_scope=step_scope,
            sink=functools.partial(self._emit_running, invocation_id, begin.seal),
        )
        self._running[invocation_id] = _Running(execution, span, begin.seal)
        token = otel_context.attach(parent)
        try:
            execution.start()
        finally:
            otel_context.detach(token)

    def _emit_running(self, invocation_id: int, seal: Seal | None, message: Message) -> None:
        self._emit(invocation_id, message, seal)

    def _emit(self, invocation_id: int, message: Message, seal: Seal | None) -> None:
        """Queue a frame for the writer; a final message ends its invocation."""
        sequence = seal.take() if seal is not None else 0
        self._outbox.append(Answer(invocation_id, message, seal, sequence))
        if not isinstance(message, Report) and not isinstance(message, LogLine):
            ended = self._running.pop(invocation_id, None)
            if ended is not None and ended.span is not None:
                _record_end(ended.span, message)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _refuse(self, invocation_id: int, problem: str, seal: Seal | None = None) -> None:
        """The worker broke the protocol for this invocation: it ends as a HostError."""
        log.warning("the worker broke the Session protocol", problem=problem)
        refused = self._running.pop(invocation_id, None)
        if refused is not None:
            self._abandon(refused)
            seal = refused.seal
        self._emit(invocation_id, _host_error(problem), seal)

    def _abandon(self, running: _Running) -> None:
        task = asyncio.create_task(running.execution.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        if running.span is not None:
            running.span.set_attribute("reverb.outcome", "Abandoned")
            running.span.end()

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._outbox:
                self._wake = loop.create_future()
                await self._wake
                continue
            frames, self._outbox = self._outbox, []
            try:
                await self._send(frames)
            except Exception as error:  # the worker went away: the session is over
                log.info("a session's worker is gone", error=repr(error))
                return


def _host_error(problem: str) -> RunFailed:
    return RunFailed(ErrorInfo(HOST_ERROR.name, problem), retriable=HOST_ERROR.retriable)


def _record_end(span: trace.Span, message: Message) -> None:
    outcome = type(message).__name__
    span.set_attribute("reverb.outcome", outcome)
    if isinstance(message, RunFailed):
        error = message.error
        record_error(span, error.type, error.message, error.stack)
    span.end()


class _StepSpan:
    """The span of one attempt at a step.run, current while its code runs (so the spans
    of instrumented libraries it calls are its children); an exception it raises is
    recorded on it (status and an `exception` event), as `Tracer.start_as_current_span`
    does. A plain class rather than that method's two nested generator context managers:
    it is made once per step."""

    __slots__ = ("_attributes", "_name", "_span", "_token")

    def __init__(self, attempts: Mapping[str, int], step_id: str, name: str) -> None:
        self._name = f"step {name}"
        self._attributes: dict[str, AttributeValue] = {
            "reverb.step.id": step_id,
            "reverb.attempt": attempts.get(step_id, 0),
        }
        self._span: trace.Span = trace.INVALID_SPAN
        self._token: object = None

    def __enter__(self) -> trace.Span:
        span = self._span = tracer.start_span(self._name, attributes=self._attributes)
        self._token = otel_context.attach(trace.set_span_in_context(span))
        return span

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        otel_context.detach(self._token)  # type: ignore[arg-type]
        span = self._span
        # Only an Exception: a BaseException (an engine interrupt, a cancellation) is not
        # the step's error.
        if isinstance(error, Exception):
            span.record_exception(error)
            span.set_status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")
        span.end()
