"""Apps and function definitions: data attached to plain async functions."""

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any, TypeVar, cast

from reverb._arrivals import Batch, Debounce, Singleton, idempotency_key
from reverb._cancel_on import CancelOn, cancel_on_list
from reverb._context import Context
from reverb._flow import Concurrency, Priority, RateLimit, Throttle, concurrency_limits, option
from reverb._options import Timeouts, limit
from reverb._triggers import MAX_TRIGGERS, CronTrigger, EventTrigger, Trigger
from reverb._wait_sources import WaitExpression, literal_waits

Handler = Callable[[Context], Awaitable[Any]]
HandlerT = TypeVar("HandlerT", bound=Handler)

MAX_RETRIES = 20
_ATTRIBUTE = "__reverb_function__"


@dataclass(frozen=True)
class FunctionDefinition:
    """A function as the engine knows it; `handler` is the decorated async function."""

    id: str
    name: str
    triggers: tuple[Trigger, ...]
    retries: int
    handler: Handler = field(repr=False, compare=False)
    # The id of the function that handles this one's failures (`on_failure`), if any.
    on_failure: str | None = None
    # From queued to the first invocation, and from then to the end; None: no limit.
    start_timeout: timedelta | None = None
    finish_timeout: timedelta | None = None
    concurrency: tuple[Concurrency, ...] = ()
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    priority: Priority | None = None
    # How events become runs (`reverb._arrivals`).
    debounce: Debounce | None = None
    idempotency: str | None = None
    singleton: Singleton | None = None
    batch: Batch | None = None
    # Events that cancel a run (`reverb.CancelOn`), in declaration order.
    cancel_on: tuple[CancelOn, ...] = ()
    # The literal expressions of the waits in the handler's source, checked at
    # registration (`reverb._wait_sources`).
    waits: tuple[WaitExpression, ...] = field(default=(), compare=False)

    @staticmethod
    def of(handler: Callable[..., Any]) -> "FunctionDefinition":
        """The definition `@app.function` attached to `handler`; TypeError if none."""
        definition = getattr(handler, _ATTRIBUTE, None)
        if not isinstance(definition, FunctionDefinition):
            raise TypeError(f"{handler!r} is not decorated with @app.function")
        return definition


class App:
    """A set of functions that one function host serves."""

    def __init__(self, id: str) -> None:
        self.id = _identifier(id, "an app id")
        self._functions: dict[str, FunctionDefinition] = {}

    @property
    def functions(self) -> Mapping[str, FunctionDefinition]:
        """The app's functions by id, in declaration order (read-only)."""
        return MappingProxyType(self._functions)

    def function(
        self,
        id: str,
        *,
        trigger: Trigger | Sequence[Trigger],
        retries: int = 4,
        name: str | None = None,
        on_failure: Handler | None = None,
        timeouts: Timeouts | None = None,
        concurrency: int | Concurrency | Sequence[Concurrency] | None = None,
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        priority: Priority | None = None,
        debounce: Debounce | None = None,
        idempotency: str | None = None,
        singleton: Singleton | None = None,
        batch: Batch | None = None,
        cancel_on: CancelOn | Sequence[CancelOn] | None = None,
    ) -> Callable[[HandlerT], HandlerT]:
        """Declare an async function `async def f(ctx: Context)` as one of the app's functions.

        `retries` counts retries after the first attempt (0 to 20). The decorated function
        is returned unchanged, so it stays callable in tests.

        `on_failure`: an async function run, as a run of its own, when a run of this one
        fails for good. It is registered as the function `<id>-failure` (no trigger of its
        own, the same retries), and its `ctx.event` is the `reverb/function.failed` event:
        data `{"function_id", "run_id", "event", "error": {"type", "message", "stack"}}`.
        `timeouts`: `reverb.Timeouts(start=..., finish=...)`; a run exceeding either fails
        with `FunctionTimeout`, without retries.
        Flow control (`reverb.Concurrency`, up to two; `reverb.Throttle`,
        `reverb.RateLimit`, `reverb.Priority`) is enforced by the engine, and so are
        `debounce` (`reverb.Debounce`), `idempotency` (a CEL key: one run per key per 24
        hours), `singleton` (`reverb.Singleton`) and `batch` (`reverb.Batch`), which decide
        how events become runs (README, "Flow control").
        `cancel_on`: `reverb.CancelOn(event=..., match=..., if_=..., timeout=...)`, or a list
        of up to five: an event accepted after a run was created that meets one cancels
        the run (README, "Cancelling runs from events").
        """
        function_id = _identifier(id, "a function id")
        if function_id in self._functions:
            raise ValueError(f"app {self.id!r} already has a function {function_id!r}")
        triggers = _triggers(trigger, function_id)
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise TypeError(f"retries must be an int, not {retries!r}")
        if not 0 <= retries <= MAX_RETRIES:
            raise ValueError(f"retries must be between 0 and {MAX_RETRIES}, not {retries}")
        display = function_id if name is None else _identifier(name, "a function name")
        start, finish = _timeouts(timeouts, function_id)
        failure = None
        if on_failure is not None:
            failure = FunctionDefinition(
                failure_function_id(function_id),
                f"{display} (on failure)",
                (),
                retries,
                _handler(on_failure, function_id),
                waits=literal_waits(on_failure),
            )
        limits = concurrency_limits(concurrency, function_id)
        throttling = option(throttle, Throttle, "throttle", function_id)
        rate_limiting = option(rate_limit, RateLimit, "rate_limit", function_id)
        prioritizing = option(priority, Priority, "priority", function_id)
        debouncing = option(debounce, Debounce, "debounce", function_id)
        idempotent = idempotency_key(idempotency, function_id)
        single = option(singleton, Singleton, "singleton", function_id)
        batching = option(batch, Batch, "batch", function_id)
        if debouncing is not None and batching is not None:
            raise ValueError(f"function {function_id!r}: debounce and batch cannot be combined")
        cancellations = cancel_on_list(cancel_on, function_id)

        def decorate(handler: HandlerT) -> HandlerT:
            _require_async(handler, function_id)
            if hasattr(handler, _ATTRIBUTE):
                existing = FunctionDefinition.of(handler).id
                raise ValueError(f"{handler!r} is already declared as function {existing!r}")
            for taken in (function_id, *([failure.id] if failure is not None else [])):
                if taken in self._functions:
                    raise ValueError(f"app {self.id!r} already has a function {taken!r}")
            definition = FunctionDefinition(
                function_id,
                display,
                triggers,
                retries,
                handler,
                on_failure=failure.id if failure is not None else None,
                start_timeout=start,
                finish_timeout=finish,
                concurrency=limits,
                throttle=throttling,
                rate_limit=rate_limiting,
                priority=prioritizing,
                debounce=debouncing,
                idempotency=idempotent,
                singleton=single,
                batch=batching,
                cancel_on=cancellations,
                waits=literal_waits(handler),
            )
            setattr(handler, _ATTRIBUTE, definition)
            self._functions[function_id] = definition
            if failure is not None:
                self._functions[failure.id] = failure
            return handler

        return decorate

    def __repr__(self) -> str:
        return f"App({self.id!r}, functions={list(self._functions)})"


def _identifier(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, not {value!r}")
    if value != value.strip():
        raise ValueError(f"{what} {value!r} has leading or trailing whitespace")
    return value


def failure_function_id(function_id: str) -> str:
    """The id under which `function_id`'s `on_failure` handler is registered."""
    return f"{function_id}-failure"


def _handler(on_failure: object, function_id: str) -> Handler:
    if not callable(on_failure):
        raise TypeError(f"function {function_id!r}: on_failure must be an async function")
    _require_async(on_failure, function_id)
    return cast(Handler, on_failure)


def _timeouts(
    timeouts: Timeouts | None, function_id: str
) -> tuple[timedelta | None, timedelta | None]:
    if timeouts is None:
        return None, None
    if not isinstance(timeouts, Timeouts):
        raise TypeError(f"function {function_id!r}: timeouts must be reverb.Timeouts(...)")
    where = f"function {function_id!r}: timeouts"
    return limit(timeouts.start, f"{where}.start"), limit(timeouts.finish, f"{where}.finish")


def _require_async(handler: Callable[..., Any], function_id: str) -> None:
    if not inspect.iscoroutinefunction(handler):
        raise TypeError(
            f"function {function_id!r}: {handler!r} must be an async function "
            "(async def f(ctx: Context))"
        )


def _triggers(trigger: object, function_id: str) -> tuple[Trigger, ...]:
    items: list[object] = list(trigger) if isinstance(trigger, list | tuple) else [trigger]
    if not items:
        raise ValueError(f"function {function_id!r} needs at least one trigger")
    triggers: list[Trigger] = []
    for item in items:
        if not isinstance(item, EventTrigger | CronTrigger):
            raise TypeError(
                f"function {function_id!r}: trigger {item!r} is not event(...) or cron(...)"
            )
        triggers.append(item)
    unique = tuple(dict.fromkeys(triggers))
    crons = [(item.expression, item.timezone) for item in unique if isinstance(item, CronTrigger)]
    if len(set(crons)) != len(crons):
        raise ValueError(f"function {function_id!r}: a cron appears twice, with two policies")
    if len(unique) > MAX_TRIGGERS:
        raise ValueError(
            f"function {function_id!r} has {len(unique)} triggers: at most {MAX_TRIGGERS},"
            " events and crons together"
        )
    return unique
