"""A function's flow-control options as the engine stores and enforces them.

Concurrency, throttling, rate limits and priority are enforced by run gates; debounce,
idempotency, singleton and batch decide how events become runs (`execution.arrivals`,
in the fan-out) and are enforced by gates too (debounce, batch, singleton).

Registered with the function (`FunctionDefinition.flow`), stored as JSON in
`functions.flow` (NULL when the function has none), and read back, parsed once per
distinct document, wherever a run is created or admitted (`FunctionRef.flow`).
`check` compiles every expression at registration, so a bad one is refused with a
message naming the function and the option.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any, Literal

import orjson

from reverb_store.expressions import Expression, compile_expression

MAX_CONCURRENCY_LIMITS = 2
# Larger limits are configuration mistakes; the sliding window keeps one time per run.
MAX_RATE_LIMIT = 10_000
MAX_LIMIT = 1_000_000
MAX_PERIOD = timedelta(days=7)
PRIORITY_RANGE = (-600, 600)
EVENT_VARIABLES = frozenset({"event"})

# Longest debounce period or timeout and batch timeout (Inngest caps debounce at 7 days),
# and the largest batch.
MAX_WAIT = timedelta(days=7)
MAX_BATCH_SIZE = 1000

Scope = Literal["function", "app"]
SingletonMode = Literal["skip", "cancel"]


@dataclass(frozen=True, slots=True)
class ConcurrencyLimit:
    limit: int
    key: str | None = None
    scope: Scope = "function"


@dataclass(frozen=True, slots=True)
class ThrottleLimit:
    limit: int
    period: timedelta
    key: str | None = None
    burst: int = 1


@dataclass(frozen=True, slots=True)
class RateLimit:
    limit: int
    period: timedelta
    key: str | None = None


@dataclass(frozen=True, slots=True)
class DebounceOptions:
    period: timedelta
    key: str | None = None
    # The longest wait from the window's first event; None: no cap.
    timeout: timedelta | None = None


@dataclass(frozen=True, slots=True)
class SingletonOptions:
    key: str | None = None
    mode: SingletonMode = "skip"


@dataclass(frozen=True, slots=True)
class BatchOptions:
    max_size: int
    timeout: timedelta
    key: str | None = None


@dataclass(frozen=True, slots=True)
class FlowOptions:
    concurrency: tuple[ConcurrencyLimit, ...] = ()
    throttle: ThrottleLimit | None = None
    rate_limit: RateLimit | None = None
    # A CEL expression: seconds of advance in the function's queue.
    priority: str | None = None
    # A CEL key: one run per key per 24 hours.
    idempotency: str | None = None
    debounce: DebounceOptions | None = None
    singleton: SingletonOptions | None = None
    batch: BatchOptions | None = None

    def __bool__(self) -> bool:
        return bool(self.concurrency) or any(
            option is not None
            for option in (self.throttle, self.rate_limit, self.priority, *self._arrival())
        )

    def arrives(self) -> bool:
        """Whether the fan-out handles the function's events itself (`execution.arrivals`)."""
        return any(option is not None for option in self._arrival())

    def _arrival(self) -> tuple[object, ...]:
        return (self.idempotency, self.debounce, self.singleton, self.batch)

    def arrival_keys(self) -> dict[str, str]:
        """The key expressions of debounce, idempotency, singleton and batch, by option."""
        sources = {
            "idempotency": self.idempotency,
            "debounce.key": None if self.debounce is None else self.debounce.key,
            "singleton.key": None if self.singleton is None else self.singleton.key,
            "batch.key": None if self.batch is None else self.batch.key,
        }
        return {name: source for name, source in sources.items() if source is not None}

    def document(self) -> dict[str, Any]:
        """The JSON document stored (and hashed): only the options that are set."""
        document: dict[str, Any] = {}
        if self.concurrency:
            document["concurrency"] = [
                {"limit": c.limit, "key": c.key, "scope": c.scope} for c in self.concurrency
            ]
        if (throttle := self.throttle) is not None:
            document["throttle"] = {
                "limit": throttle.limit,
                "period_ms": _milliseconds(throttle.period),
                "key": throttle.key,
                "burst": throttle.burst,
            }
        if (rate_limit := self.rate_limit) is not None:
            document["rate_limit"] = {
                "limit": rate_limit.limit,
                "period_ms": _milliseconds(rate_limit.period),
                "key": rate_limit.key,
            }
        if self.priority is not None:
            document["priority"] = {"run": self.priority}
        if self.idempotency is not None:
            document["idempotency"] = self.idempotency
        if (debounce := self.debounce) is not None:
            document["debounce"] = {
                "period_ms": _milliseconds(debounce.period),
                "key": debounce.key,
                "timeout_ms": None if debounce.timeout is None else _milliseconds(debounce.timeout),
            }
        if (singleton := self.singleton) is not None:
            document["singleton"] = {"key": singleton.key, "mode": singleton.mode}
        if (batch := self.batch) is not None:
            document["batch"] = {
                "max_size": batch.max_size,
                "timeout_ms": _milliseconds(batch.timeout),
                "key": batch.key,
            }
        return document

    def to_json(self) -> str | None:
        """The stored text: None for a function without flow control."""
        return orjson.dumps(self.document(), option=orjson.OPT_SORT_KEYS).decode() if self else None


NO_FLOW = FlowOptions()


@lru_cache(maxsize=4096)
def parse(text: str | None) -> FlowOptions:
    """The options a stored document holds (cached per text: fan-outs parse it per run)."""
    if text is None:
        return NO_FLOW
    document: Mapping[str, Any] = orjson.loads(text)
    throttle = document.get("throttle")
    rate_limit = document.get("rate_limit")
    priority = document.get("priority")
    debounce = document.get("debounce")
    singleton = document.get("singleton")
    batch = document.get("batch")
    return FlowOptions(
        concurrency=tuple(
            ConcurrencyLimit(item["limit"], item.get("key"), item.get("scope", "function"))
            for item in document.get("concurrency", ())
        ),
        throttle=ThrottleLimit(
            throttle["limit"],
            timedelta(milliseconds=throttle["period_ms"]),
            throttle.get("key"),
            throttle.get("burst", 1),
        )
        if throttle
        else None,
        rate_limit=RateLimit(
            rate_limit["limit"],
            timedelta(milliseconds=rate_limit["period_ms"]),
            rate_limit.get("key"),
        )
        if rate_limit
        else None,
        priority=priority["run"] if priority else None,
        idempotency=document.get("idempotency"),
        debounce=DebounceOptions(
            timedelta(milliseconds=debounce["period_ms"]),
            debounce.get("key"),
            None
            if debounce.get("timeout_ms") is None
            else timedelta(milliseconds=debounce["timeout_ms"]),
        )
        if debounce
        else None,
        singleton=SingletonOptions(singleton.get("key"), singleton.get("mode", "skip"))
        if singleton
        else None,
        batch=BatchOptions(
            batch["max_size"], timedelta(milliseconds=batch["timeout_ms"]), batch.get("key")
        )
        if batch
        else None,
    )


def check(function_id: str, options: FlowOptions) -> None:
    """ValueError (an ExpressionError for an expression) naming the function and the
    option, unless every option can be enforced as given."""
    where = f"function {function_id!r}"
    if len(options.concurrency) > MAX_CONCURRENCY_LIMITS:
        raise ValueError(
            f"{where}: concurrency takes at most {MAX_CONCURRENCY_LIMITS} limits,"
            f" not {len(options.concurrency)}"
        )
    for index, concurrency in enumerate(options.concurrency):
        what = f"{where}: concurrency[{index}]"
        _check_limit(concurrency.limit, MAX_LIMIT, f"{what}.limit")
        if concurrency.scope not in ("function", "app"):
            raise ValueError(f"{what}.scope must be 'function' or 'app'")
        if concurrency.scope == "app" and concurrency.key is None:
            raise ValueError(f"{what}: scope 'app' needs a key")
        key_expression(concurrency.key, f"{what}.key")
    if (throttle := options.throttle) is not None:
        _check_limit(throttle.limit, MAX_LIMIT, f"{where}: throttle.limit")
        _check_limit(throttle.burst, MAX_LIMIT, f"{where}: throttle.burst")
        _check_period(throttle.period, f"{where}: throttle.period")
        key_expression(throttle.key, f"{where}: throttle.key")
    if (rate_limit := options.rate_limit) is not None:
        _check_limit(rate_limit.limit, MAX_RATE_LIMIT, f"{where}: rate_limit.limit")
        _check_period(rate_limit.period, f"{where}: rate_limit.period")
        key_expression(rate_limit.key, f"{where}: rate_limit.key")
    if options.priority is not None:
        priority_expression(options.priority, f"{where}: priority.run")
    _check_arrival(where, options)


def _check_arrival(where: str, options: FlowOptions) -> None:
    for option, source in options.arrival_keys().items():
        key_expression(source, f"{where}: {option}")
    waits: list[tuple[str, timedelta]] = []
    if (debounce := options.debounce) is not None:
        waits.append(("debounce.period", debounce.period))
        if debounce.timeout is not None:
            waits.append(("debounce.timeout", debounce.timeout))
    if (batch := options.batch) is not None:
        _check_limit(batch.max_size, MAX_BATCH_SIZE, f"{where}: batch.max_size")
        waits.append(("batch.timeout", batch.timeout))
        if debounce is not None:
            raise ValueError(f"{where}: debounce and batch cannot be combined")
    if (singleton := options.singleton) is not None and singleton.mode not in ("skip", "cancel"):
        raise ValueError(f"{where}: singleton.mode must be 'skip' or 'cancel'")
    for option, wait in waits:
        if not timedelta(milliseconds=1) <= wait <= MAX_WAIT:
            raise ValueError(
                f"{where}: {option} must be between 1ms and {MAX_WAIT.days} days, not {wait}"
            )


def key_expression(source: str | None, what: str) -> Expression | None:
    """The compiled key (None: one key for every run)."""
    if source is None:
        return None
    return compile_expression(source, variables=EVENT_VARIABLES, what=what)


def priority_expression(source: str, what: str) -> Expression:
    return compile_expression(source, variables=EVENT_VARIABLES, what=what)


def _check_limit(value: int, maximum: int, what: str) -> None:
    if not 1 <= value <= maximum:
        raise ValueError(f"{what} must be between 1 and {maximum:,}, not {value}")


def _check_period(period: timedelta, what: str) -> None:
    if not timedelta(milliseconds=1) <= period <= MAX_PERIOD:
        raise ValueError(f"{what} must be between 1ms and {MAX_PERIOD.days} days, not {period}")


def _milliseconds(period: timedelta) -> int:
    return period // timedelta(milliseconds=1)
