"""`ctx.step`: the step API a function calls, turned into reports for the engine.

An argument a step cannot take raises StepArgumentError at the call site, naming the step:
the run fails at once (a retry would call the step the same way).
"""

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from types import FunctionType
from typing import Any, Protocol, cast

from reverb import _json
from reverb._durations import Duration, parse_duration
from reverb._errors import OutputUnserializableError, StepArgumentError, StepError
from reverb._event import Event
from reverb._failures import step_failure
from reverb._logger import CURRENT_STEP
from reverb._options import Step as StepOptions
from reverb._options import limit
from reverb._protocol import (
    Ack,
    AckResult,
    ErrorInfo,
    EventInput,
    InvokeFunction,
    MemoizedStep,
    SendEvents,
    Sleep,
    StepFailure,
    StepOperation,
    StepOutput,
    StepReport,
    WaitCondition,
    WaitForEvent,
)
from reverb._waits import Wait, condition_of, conditions_of, resolved
from reverb.engine_errors import STEP_FAILED, STEP_TIMEOUT


class StepChannel(Protocol):
    """What `Steps` needs from the execution it belongs to."""

    def claim(self, name: str) -> str:
        """The step id for the next step called `name` (raises Interrupt once abandoned)."""

    def memoized(self, step_id: str) -> MemoizedStep | None:
        """The committed result of `step_id`, if any."""

    def running(self, step_id: str, name: str) -> AbstractContextManager[object]:
        """Held while a step.run's code executes."""

    async def report(self, report: StepReport) -> Ack:
        """Send `report`; the ack (never returns for a pending or retry-later ack)."""

    async def pend(self, step_id: str) -> None:
        """Wait on a step the engine still holds pending: never returns in this invocation."""


class Steps:
    """`ctx.step`: a function's steps; each is durable, and replays return the stored result."""

    def __init__(self, channel: StepChannel) -> None:
        self._channel = channel

    async def run(
        self, id: str | StepOptions, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Any:
        """Call `fn(*args, **kwargs)` once (a sync fn in a thread) and store its JSON result.

        `id` is the step's id, or a `reverb.Step(id, timeout=...)`: an attempt running past
        the timeout fails with the retriable `StepTimeout` (a sync fn's thread cannot be
        stopped: it runs on, and its result is dropped).
        """
        name, timeout = _run_options(id)
        if not callable(fn):
            raise StepArgumentError(f"step {name!r}: {fn!r} is not callable")
        step_id = self._channel.claim(name)
        memo = self._channel.memoized(step_id)
        if memo is not None:
            return await self._replay(memo)
        started_at = _now()
        operation: StepOperation
        try:
            with self._channel.running(step_id, name):
                if timeout is None:
                    value = await _call(fn, args, kwargs, step_id)
                else:
                    value = await _call_within(fn, args, kwargs, timeout, name, step_id)
            operation = StepOutput(_json.encode(value))
        except _json.UnserializableError as error:
            message = f"step {name!r} returned a value that is not JSON: {error}"
            operation = step_failure(OutputUnserializableError(message))
        except _TimedOut as timed_out:
            operation = StepFailure(ErrorInfo(STEP_TIMEOUT.name, str(timed_out), ""), True)
        except Exception as error:
            operation = step_failure(error)
        return await self._report(step_id, name, started_at, operation)

    async def sleep(self, id: str, duration: Duration) -> None:
        """Pause the function for `duration` ("30s", "14d", a timedelta, seconds)."""
        _check_id(id, "sleep")
        delay = _duration(duration, id)
        await self._wait(id, lambda: Sleep(_now() + delay))

    async def sleep_until(self, id: str, when: datetime | str) -> None:
        """Pause the function until `when` (an aware datetime or an ISO 8601 string)."""
        _check_id(id, "sleep_until")
        wake_at = _aware_datetime(when, f"step {id!r}: sleep_until")
        await self._wait(id, lambda: Sleep(wake_at))

    async def invoke(
        self,
        id: str,
        function_id: str,
        data: Mapping[str, Any] | None = None,
        timeout: Duration | None = None,  # noqa: ASYNC109 (a durable timeout, not asyncio's)
    ) -> Any:
        """Run function `function_id` with `data` as its event data; its return value."""
        _check_id(id, "invoke")
        if not isinstance(function_id, str) or not function_id:
            raise StepArgumentError(f"step {id!r}: invoke needs a function id, not {function_id!r}")
        payload = _object_json(data, f"step {id!r}: invoke data")
        limit = None if timeout is None else _duration(timeout, id)
        return await self._wait(id, lambda: InvokeFunction(function_id, payload, limit))

    async def send_event(
        self,
        id: str,
        name: str | Sequence[Mapping[str, Any]],
        data: Mapping[str, Any] | None = None,
    ) -> list[str]:
        """Send one event (`name`, `data`) or a list of `{"name", "data", "id"?, "ts"?}`;
        the new events' ids."""
        _check_id(id, "send_event")
        events: tuple[EventInput, ...]
        if isinstance(name, str):
            events = (_event_input({"name": name, "data": data}, id),)
        elif data is not None:
            raise StepArgumentError(f"step {id!r}: send_event takes `data` only with an event name")
        elif isinstance(name, Sequence) and name:
            items: list[object] = list(name)
            events = tuple(_event_input(event, id) for event in items)
        else:
            raise StepArgumentError(
                f"step {id!r}: send_event needs an event name or a non-empty list, not {name!r}"
            )
        return cast(list[str], await self._wait(id, lambda: SendEvents(events)))

    async def wait_for_event(
        self,
        id: str,
        event: str,
        *,
        match: str | None = None,
        if_: str | None = None,
        timeout: Duration = "1h",  # noqa: ASYNC109 (a durable timeout, not asyncio's)
        lookback: Duration | None = None,
    ) -> Event | None:
        """Wait for an event named `event`: with `match="data.order_id"`, one whose
        `data.order_id` equals this run's event's; with `if_`, one for which that CEL
        expression over `event` (this run's) and `async` (the candidate) is true. The
        event, or None once `timeout` passed. With `lookback`, an event accepted up to
        that long before the wait also resolves it (the earliest)."""
        _check_id(id, "wait_for_event")
        condition = condition_of(Wait(event, match, if_), f"step {id!r}")
        found = await self._wait_for(id, "wait_for_event", (condition,), timeout, lookback)
        return None if found is None else found[1]

    async def wait_for_any(
        self,
        id: str,
        waits: Sequence[Wait],
        *,
        timeout: Duration = "1h",  # noqa: ASYNC109 (a durable timeout, not asyncio's)
        lookback: Duration | None = None,
    ) -> tuple[int, Event] | None:
        """Wait for the first event that meets any of `waits`: `(index, event)`, or None
        once `timeout` passed. The other waits end with it."""
        _check_id(id, "wait_for_any")
        conditions = conditions_of(waits, f"step {id!r}: wait_for_any")
        return await self._wait_for(id, "wait_for_any", conditions, timeout, lookback)

    async def wait_for_all(
        self,
        id: str,
        waits: Sequence[Wait],
        *,
        timeout: Duration = "1h",  # noqa: ASYNC109 (a durable timeout, not asyncio's)
        lookback: Duration | None = None,
    ) -> list[Event | None]:
        """Wait for an event for each of `waits` (steps `id[0]`, `id[1]`, ...): a list as
        long as `waits`, with None where nothing came before `timeout`."""
        _check_id(id, "wait_for_all")
        conditions = conditions_of(waits, f"step {id!r}: wait_for_all")
        found = await asyncio.gather(
            *(
                self._wait_for(f"{id}[{index}]", "wait_for_all", (condition,), timeout, lookback)
                for index, condition in enumerate(conditions)
            )
        )
        return [None if item is None else item[1] for item in found]

    async def _wait_for(
        self,
        id: str,
        kind: str,
        conditions: tuple[WaitCondition, ...],
        timeout: Duration,  # noqa: ASYNC109 (a durable timeout, not asyncio's)
        lookback: Duration | None,
    ) -> tuple[int, Event] | None:
        limit = _duration(timeout, id)
        back = None if lookback is None else _duration(lookback, id)
        if limit < timedelta(0) or (back is not None and back < timedelta(0)):
            raise StepArgumentError(f"step {id!r}: {kind} needs durations of at least 0")
        output = await self._wait(id, lambda: WaitForEvent(conditions, limit, back))
        return resolved(output)

    async def _wait(self, name: str, operation: Callable[[], StepOperation]) -> Any:
        step_id = self._channel.claim(name)
        memo = self._channel.memoized(step_id)
        if memo is not None:
            return await self._replay(memo)
        started_at = _now()
        return await self._report(step_id, name, started_at, operation())

    async def _report(
        self, step_id: str, name: str, started_at: datetime, operation: StepOperation
    ) -> Any:
        report = StepReport(step_id, name, started_at, _now(), operation)
        ack = await self._channel.report(report)
        if ack.result is AckResult.FAILED:
            error = ack.error or _reported_error(operation)
            raise StepError(step_id, error.type, error.message, error.stack)
        if ack.output is not None:
            return _json.decode(ack.output)
        if isinstance(operation, StepOutput):
            return _json.decode(operation.output)
        return None

    async def _replay(self, memo: MemoizedStep) -> Any:
        if memo.pending:
            await self._channel.pend(memo.step_id)
        return _replay(memo)


def _replay(memo: MemoizedStep) -> Any:
    if memo.error is not None:
        raise StepError(memo.step_id, memo.error.type, memo.error.message, memo.error.stack)
    return _json.decode(memo.output or b"")


async def _call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], step_id: str
) -> Any:
    if _is_async(fn):
        return await fn(*args, **kwargs)
    # The thread's context says which step it runs (ctx.logger lines are the step's).
    token = CURRENT_STEP.set(step_id)
    try:
        result = await asyncio.to_thread(fn, *args, **kwargs)
    finally:
        CURRENT_STEP.reset(token)
    if inspect.isawaitable(result):
        return await result
    return result


class _TimedOut(Exception):
    """A step's attempt ran past its timeout (reported as StepTimeout)."""


async def _call_within(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    within: timedelta,
    name: str,
    step_id: str,
) -> Any:
    """`_call`, cancelled once `within` passes (a TimeoutError of fn's own is its own)."""
    scope = asyncio.timeout(within.total_seconds())
    try:
        async with scope:
            return await _call(fn, args, kwargs, step_id)
    except TimeoutError:
        if scope.expired():
            raise _TimedOut(f"step {name!r} did not finish within {within}") from None
        raise


def _run_options(id: str | StepOptions) -> tuple[str, timedelta | None]:
    """The step's id and timeout from `run`'s first argument."""
    if not isinstance(id, StepOptions):
        _check_id(id, "run")
        return id, None
    _check_id(id.id, "run")
    try:
        return id.id, limit(id.timeout, "timeout")
    except ValueError as error:
        raise StepArgumentError(f"step {id.id!r}: {error}") from None


def _is_async(fn: Callable[..., Any]) -> bool:
    # A plain `async def` is recognised from its code flags (several times cheaper than
    # inspect, which also unwraps methods and partials: the fallback).
    if type(fn) is FunctionType and fn.__code__.co_flags & inspect.CO_COROUTINE:
        return True
    return inspect.iscoroutinefunction(fn)


def _reported_error(operation: StepOperation) -> ErrorInfo:
    if isinstance(operation, StepFailure):
        return operation.error
    return ErrorInfo(STEP_FAILED.name, "the engine reported the step as failed")


def _check_id(step_id: object, kind: str) -> None:
    if not isinstance(step_id, str) or not step_id.strip():
        raise StepArgumentError(f"step.{kind} needs a step id, a non-empty string, not {step_id!r}")


def _duration(value: Duration, step_name: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as error:
        raise StepArgumentError(f"step {step_name!r}: {error}") from None


def _event_input(event: object, step_name: str) -> EventInput:
    if not isinstance(event, Mapping):
        raise StepArgumentError(f"step {step_name!r}: an event to send is a dict, not {event!r}")
    unknown = set(event) - {"name", "data", "id", "ts"}
    if unknown:
        raise StepArgumentError(f"step {step_name!r}: unknown event fields {sorted(unknown)}")
    name = event.get("name")
    if not isinstance(name, str) or not name:
        raise StepArgumentError(
            f"step {step_name!r}: an event needs a non-empty name, not {name!r}"
        )
    event_id = event.get("id")
    if event_id is not None and (not isinstance(event_id, str) or not event_id):
        raise StepArgumentError(f"step {step_name!r}: an event id is a non-empty string")
    ts = event.get("ts")
    return EventInput(
        name=name,
        data=_object_json(event.get("data"), f"step {step_name!r}: event {name!r} data"),
        id=event_id,
        ts=None if ts is None else _aware_datetime(ts, f"step {step_name!r}: an event's ts"),
    )


def _object_json(data: Mapping[str, Any] | None, what: str) -> bytes:
    if data is None:
        return b"{}"
    if not isinstance(data, Mapping):
        raise StepArgumentError(f"{what} must be a dict, not {type(data).__name__}")
    try:
        return _json.encode(dict(data))
    except _json.UnserializableError as error:
        raise StepArgumentError(f"{what} is not JSON: {error}") from None


def _aware_datetime(value: datetime | str, what: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise StepArgumentError(f"{what}: {value!r} is not an ISO 8601 date and time") from None
    if not isinstance(value, datetime):
        raise StepArgumentError(f"{what} needs a datetime or an ISO 8601 string, not {value!r}")
    if value.tzinfo is None:
        raise StepArgumentError(f"{what}: {value.isoformat()} has no time zone (add +00:00 or Z)")
    return value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)
