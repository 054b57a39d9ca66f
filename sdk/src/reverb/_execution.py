"""One invocation of one function, independent of any wire protocol.

A host builds an `Execution` from an `Invocation`, calls `start()`, sends on whatever
`messages()` yields, and passes each `Ack` it receives to `acknowledge()`:

    execution = Execution(definition, invocation)
    execution.start()
    async for message in execution.messages():   # StepReport..., then one final message
        send(message)
    await execution.close()

Or, with `sink=send`, each message is handed to `send` the moment it exists (no task
of the host's wakes per message); the final message is the last call.

The function runs as a task. Memoized steps return at once; a new step reports and
waits for its ack. `ctx.logger` lines are messages too (`LogLine`, no ack), except while
the function replays over its memo (`_logger` says how a line finds its step).

Once at least one step is pending (a wait, or a step to retry later), no step.run is
executing or awaiting its ack, and the function has had a few turns of the event loop
without starting another step, the execution abandons the function (the pending steps
raise `Interrupt`) and yields `Suspended`.
"""

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from reverb import _json
from reverb._app import FunctionDefinition
from reverb._context import Context
from reverb._errors import Interrupt
from reverb._event import Event
from reverb._failures import run_failure
from reverb._logger import CURRENT_STEP, LINES_LIMIT, NULL_LOGGER, Level, Logger, step_on_stack
from reverb._protocol import (
    Ack,
    AckResult,
    ErrorInfo,
    FinalMessage,
    Invocation,
    LogLine,
    MemoizedStep,
    Message,
    ProtocolError,
    RunCompleted,
    RunFailed,
    StepReport,
    Suspended,
)
from reverb._step import Steps
from reverb._step_ids import StepIds
from reverb.engine_errors import ENGINE_ERROR, OUTPUT_UNSERIALIZABLE

StepScope = Callable[[str, str], AbstractContextManager[object]]
"""Wraps the execution of each new step.run, given its id and name (e.g. a tracing span)."""

Sink = Callable[[Message], None]
"""Takes each message as it is produced; must not raise (it runs inside the function)."""

# Event-loop turns the function gets to start another step before the run suspends.
_SETTLE_TURNS = 10
# Turns an abandoned function gets to unwind from Interrupt before it is cancelled.
_UNWIND_TURNS = 10
# The code of `Steps.run`, whose frame a log line's step is found in (`_logger`).
_RUN_CODE = Steps.run.__code__


class Execution:
    """Runs one invocation of `definition` (see the module docstring).

    The hot path (a step reported, then acknowledged) costs one future for the ack and
    one wake-up of the reader of `messages()`; a task that watches for suspension runs
    only while a wait is pending and nothing else is in flight.
    """

    def __init__(
        self,
        definition: FunctionDefinition,
        invocation: Invocation,
        *,
        step_scope: StepScope | None = None,
        sink: Sink | None = None,
    ) -> None:
        self._definition = definition
        self._sink = sink
        self._invocation = invocation
        self._memo = {memo.step_id: memo for memo in invocation.memo}
        self._step_scope = step_scope
        self._step_ids = StepIds()
        self._outbox: deque[Message | None] = deque()
        self._reader: asyncio.Future[None] | None = None
        self._awaiting: dict[str, asyncio.Future[Ack]] = {}
        self._pending: dict[str, asyncio.Future[Ack]] = {}
        self._executing = 0
        self._step_calls = 0
        self._abandoned = False
        self._finished = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._function: asyncio.Task[None] | None = None
        self._settler: asyncio.Task[None] | None = None
        # ctx.logger: whether the function logged yet (steps then mark their context),
        # the lines sent, and whether it may still replay its memo (`_replays`).
        self._logging = False
        self._lines = 0
        self._recorded = frozenset(self._memo).union(invocation.step_attempts)
        self._replaying = bool(self._recorded)
        self._replay_checked = -1

    def start(self) -> None:
        """Start the function (in a task that inherits the caller's context, e.g. a span)."""
        if self._function is not None:
            raise RuntimeError("an execution starts once")
        self._loop = asyncio.get_running_loop()
        self._function = self._loop.create_task(self._call_function(self._context()))

    async def messages(self) -> AsyncIterator[Message]:
        """Step reports as they happen, then one final message (nothing more after close).

        Nothing for an execution with a sink."""
        if self._sink is not None:
            return
        outbox = self._outbox
        while True:
            while not outbox:
                self._reader = self._future()
                await self._reader
            message = outbox.popleft()
            if message is None:
                return
            yield message
            if isinstance(message, FinalMessage):
                return

    @property
    def finished(self) -> bool:
        """Whether the final message is queued."""
        return self._finished

    def acknowledge(self, ack: Ack) -> None:
        """Resolve the step `ack` answers; ProtocolError if no step awaits it."""
        future = self._awaiting.pop(ack.step_id, None)
        if future is None:
            raise ProtocolError(f"an ack for step {ack.step_id!r}, which awaits no ack")
        if ack.result is AckResult.PENDING or ack.result is AckResult.RETRY_LATER:
            self._pending[ack.step_id] = future
        elif not future.done():
            future.set_result(ack)
        if self._pending:
            self._watch()

    async def close(self) -> None:
        """Abandon the function if it still runs; no message follows."""
        self._abandoned = True
        settler = self._settler
        if settler is not None and not settler.done():
            settler.cancel()
            await asyncio.wait((settler,))
        await self._stop_function()
        self._send(None)

    # The StepChannel that `Step` talks to.

    def claim(self, name: str) -> str:
        if self._abandoned:
            raise Interrupt()
        self._step_calls += 1
        return self._step_ids.claim(name)

    def memoized(self, step_id: str) -> MemoizedStep | None:
        return self._memo.get(step_id)

    def running(self, step_id: str, name: str) -> AbstractContextManager[object]:
        scope = None if self._step_scope is None else self._step_scope(step_id, name)
        if self._logging:
            return _MarkedRunning(self, scope, step_id)
        return _Running(self, scope)

    async def report(self, report: StepReport) -> Ack:
        if self._abandoned:
            raise Interrupt()
        future: asyncio.Future[Ack] = self._future()
        self._awaiting[report.step_id] = future
        self._send(report)
        return await future

    async def pend(self, step_id: str) -> None:
        if self._abandoned:
            raise Interrupt()
        future: asyncio.Future[Ack] = self._future()
        self._pending[step_id] = future
        self._watch()
        await future

    # Internals.

    def _context(self) -> Context:
        invocation = self._invocation
        events = invocation.events
        first = events[0] if events else Event("", "", {}, datetime.now(UTC))
        return Context(
            event=first,
            events=events,
            run_id=invocation.run_id,
            function_id=invocation.function_id,
            attempt=invocation.attempt,
            step=Steps(self),
            logger=Logger(self._log) if invocation.log_lines else NULL_LOGGER,
        )

    def _log(self, level: Level, message: str, fields: bytes | None) -> None:
        """A ctx.logger call (on the loop, or in a sync step's thread)."""
        self._logging = True
        loop = self._loop
        if self._abandoned or loop is None:
            return
        step_id = CURRENT_STEP.get()
        if step_id is None:
            step_id = step_on_stack(_RUN_CODE)
        line = LogLine(level, message, datetime.now(UTC), step_id, fields)
        if asyncio._get_running_loop() is loop:
            self._line(line)
            return
        # A closed loop raises: a sync step's thread outlived its host (its lines are moot).
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._line, line)

    def _line(self, line: LogLine) -> None:
        if self._abandoned or (self._replaying and self._replays()):
            return
        self._lines += 1
        if self._lines > LINES_LIMIT:
            if self._lines == LINES_LIMIT + 1:
                message = f"more than {LINES_LIMIT} log lines in one invocation: the rest dropped"
                self._send(LogLine("warning", message, line.at, line.step_id))
            return
        self._send(line)

    def _replays(self) -> bool:
        """Whether the function still replays what an earlier invocation ran: some step of
        the memo (or one retried now) is not reached yet, and no new step was (checked
        again only after a step call)."""
        calls = self._step_calls
        if calls != self._replay_checked:
            self._replay_checked = calls
            taken = self._step_ids.taken
            reached = len(self._recorded & taken)
            if reached == len(self._recorded) or len(taken) > reached:
                self._replaying = False
        return self._replaying

    async def _call_function(self, context: Context) -> None:
        try:
            value = await self._definition.handler(context)
        except Interrupt:
            return
        except Exception as error:
            if not self._abandoned:
                self._finish(run_failure(error))
            return
        if self._abandoned:  # the function swallowed Interrupt; its result is moot
            return
        try:
            output = _json.encode(value)
        except _json.UnserializableError as error:
            message = f"function {self._definition.id!r} returned a value that is not JSON: {error}"
            info = ErrorInfo(OUTPUT_UNSERIALIZABLE.name, message)
            self._finish(RunFailed(info, OUTPUT_UNSERIALIZABLE.retriable))
            return
        self._finish(RunCompleted(output))

    def _finish(self, message: FinalMessage) -> None:
        """Queue the final message (once); the function may start no step after it."""
        self._abandoned = True
        if not self._finished:
            self._finished = True
            self._send(message)

    def _send(self, message: Message | None) -> None:
        if self._sink is not None:
            if message is not None:
                self._sink(message)
            return
        self._outbox.append(message)
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def _future(self) -> "asyncio.Future[Any]":
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.create_future()

    def _watch(self) -> None:
        """Start watching for suspension once the function may have nothing left to do."""
        if self._settler is None and not self._abandoned and self._idle():
            loop = self._loop or asyncio.get_running_loop()
            self._settler = loop.create_task(self._settle())
            self._settler.add_done_callback(self._settler_done)

    def _settler_done(self, settler: "asyncio.Task[None]") -> None:
        self._settler = None
        if not settler.cancelled() and settler.exception() is not None:
            error = ErrorInfo(ENGINE_ERROR.name, f"the execution failed: {settler.exception()!r}")
            self._finish(RunFailed(error, retriable=ENGINE_ERROR.retriable))

    async def _settle(self) -> None:
        """Suspend once the function stays idle for a few loop turns, starting no step."""
        while not self._function_done() and self._idle():
            if await self._settled():
                await self._stop_function()
                self._finish(Suspended())
                return

    def _idle(self) -> bool:
        if not self._pending or self._awaiting or self._executing:
            return False
        return any(not future.done() for future in self._pending.values())

    async def _settled(self) -> bool:
        """Whether the function stays idle, starting no step, for a few loop turns."""
        calls = self._step_calls
        for _ in range(_SETTLE_TURNS):
            await asyncio.sleep(0)
            if self._function_done() or not self._idle() or self._step_calls != calls:
                return False
        return True

    async def _stop_function(self) -> None:
        """Raise Interrupt where the function waits on steps; cancel it if it goes on."""
        self._abandoned = True
        for future in (*self._awaiting.values(), *self._pending.values()):
            if not future.done():
                future.set_exception(Interrupt())
        self._awaiting.clear()
        self._pending.clear()
        function = self._function
        if function is None:
            return
        for _ in range(_UNWIND_TURNS):
            if function.done():
                break
            await asyncio.sleep(0)
        if not function.done():
            function.cancel()
        await asyncio.wait((function,))

    def _function_done(self) -> bool:
        return self._function is not None and self._function.done()


class _Running:
    """Held while a step.run's code executes: counted, and inside the step's scope."""

    __slots__ = ("_execution", "_scope")

    def __init__(self, execution: Execution, scope: AbstractContextManager[object] | None) -> None:
        self._execution = execution
        self._scope = scope

    def __enter__(self) -> None:
        self._execution._executing += 1
        if self._scope is not None:
            try:
                self._scope.__enter__()
            except BaseException:
                self._execution._executing -= 1
                raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        try:
            if self._scope is not None:
                return self._scope.__exit__(kind, error, traceback)
            return None
        finally:
            self._execution._executing -= 1


class _MarkedRunning(_Running):
    """`_Running` that also marks the context with the step's id (once the invocation has
    logged: the lines of tasks the step starts are then its own)."""

    __slots__ = ("_step_id", "_token")

    def __init__(
        self, execution: Execution, scope: AbstractContextManager[object] | None, step_id: str
    ) -> None:
        super().__init__(execution, scope)
        self._step_id = step_id

    def __enter__(self) -> None:
        super().__enter__()
        self._token = CURRENT_STEP.set(self._step_id)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        CURRENT_STEP.reset(self._token)
        return super().__exit__(kind, error, traceback)
