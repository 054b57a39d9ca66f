"""reverb.v1.FunctionHost: runs one SDK `Execution` per Invoke stream."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import structlog
from grpc import aio
from opentelemetry import context as otel_context
from opentelemetry import trace

import reverb
from reverb.execution import Execution, Message, ProtocolError, RunFailed, StepReport
from reverb_contracts.v1 import function_host_pb2, function_host_pb2_grpc
from reverb_function_host import wire
from reverb_telemetry import context_from_metadata, context_from_traceparent, spans_exported

tracer = trace.get_tracer("reverb.function_host")
log = structlog.get_logger("reverb.function_host")

InvokeRequests = AsyncIterator[function_host_pb2.InvokeRequest]
Context = aio.ServicerContext[Any, Any]


class FunctionHostService(function_host_pb2_grpc.FunctionHostServicer):
    """Serves the functions of one app."""

    def __init__(self, app: reverb.App) -> None:
        self._app = app

    async def Describe(
        self, request: function_host_pb2.DescribeRequest, context: Context
    ) -> function_host_pb2.DescribeResponse:
        return wire.describe_response(self._app)

    async def Invoke(
        self, request_iterator: Any, context: Context
    ) -> AsyncIterator[function_host_pb2.InvokeResponse]:
        requests: InvokeRequests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Invoke needs a Start message")
        try:
            invocation, traceparent = wire.start(first)
        except wire.WireError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        definition = self._app.functions.get(invocation.function_id)
        if definition is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"app {self._app.id!r} has no function {invocation.function_id!r}",
            )
        span = tracer.start_span(
            f"invoke {invocation.function_id}",
            context=_parent_context(context, traceparent),
            kind=trace.SpanKind.SERVER,
            attributes={
                "reverb.run_id": invocation.run_id,
                "reverb.function_id": invocation.function_id,
                "reverb.attempt": invocation.attempt,
            },
        )
        logger = log.bind(run_id=invocation.run_id, function_id=invocation.function_id)
        logger.debug("invocation started", attempt=invocation.attempt, memo=len(invocation.memo))
        # A span per step only when spans are exported: without an exporter it would cost
        # more than the rest of the step's engine work, and the invocation's span already
        # carries the trace context into the function.
        step_scope = _step_span if spans_exported() else None
        execution = Execution(definition, invocation, step_scope=step_scope)
        with trace.use_span(span, end_on_exit=False):
            execution.start()
        reader = asyncio.create_task(_read_acks(requests, execution, logger))
        problem: str | None = None
        try:
            async for message in execution.messages():
                _record(span, message, logger)
                yield wire.response(message)
            if not execution.finished:  # the reader ended the invocation
                problem = await reader
        finally:
            reader.cancel()
            await asyncio.wait((reader,))
            await execution.close()
            span.end()
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)


async def _read_acks(requests: InvokeRequests, execution: Execution, logger: Any) -> str | None:
    """Feed acks to `execution` until the worker stops sending; why it broke the protocol."""
    try:
        async for request in requests:
            execution.acknowledge(wire.ack(request))
    except (wire.WireError, ProtocolError) as error:
        logger.warning("the worker broke the Invoke protocol", problem=str(error))
        await execution.close()
        return str(error)
    if not execution.finished:
        logger.warning("the worker closed the Invoke stream before the invocation ended")
        await execution.close()
    return None


def _parent_context(context: Context, traceparent: str) -> otel_context.Context:
    parent = context_from_metadata(context.invocation_metadata())
    if not trace.get_current_span(parent).get_span_context().is_valid and traceparent:
        return context_from_traceparent(traceparent)
    return parent


@contextmanager
def _step_span(step_id: str, name: str) -> Iterator[object]:
    with tracer.start_as_current_span(
        f"step {name}", attributes={"reverb.step_id": step_id}
    ) as span:
        yield span


def _record(span: trace.Span, message: Message, logger: Any) -> None:
    if isinstance(message, StepReport):
        return
    outcome = type(message).__name__
    span.set_attribute("reverb.outcome", outcome)
    if isinstance(message, RunFailed):
        span.set_status(trace.StatusCode.ERROR, f"{message.error.type}: {message.error.message}")
    logger.debug("invocation ended", outcome=outcome)
