"""A function definition's flow-control options, reverb.v1 ⇄ `reverb_store.flow`, and its
cancel_on ⇄ `reverb_store.execution.CancelCondition`."""

from datetime import timedelta

from google.protobuf.duration_pb2 import Duration

from reverb_contracts.v1 import common_pb2
from reverb_ingress_gateway.errors import InvalidArgument
from reverb_store.execution import CancelCondition
from reverb_store.flow.options import (
    BatchOptions,
    ConcurrencyLimit,
    DebounceOptions,
    FlowOptions,
    RateLimit,
    Scope,
    SingletonMode,
    SingletonOptions,
    ThrottleLimit,
)

_SCOPES: dict[int, Scope] = {
    common_pb2.CONCURRENCY_SCOPE_UNSPECIFIED: "function",
    common_pb2.CONCURRENCY_SCOPE_FUNCTION: "function",
    common_pb2.CONCURRENCY_SCOPE_APP: "app",
}

_MODES: dict[int, SingletonMode] = {
    common_pb2.SINGLETON_MODE_UNSPECIFIED: "skip",
    common_pb2.SINGLETON_MODE_SKIP: "skip",
    common_pb2.SINGLETON_MODE_CANCEL: "cancel",
}


def flow_options(message: common_pb2.FunctionDefinition) -> FlowOptions:
    """The options a definition names (checked later: `validation.check_app`)."""
    where = f"function {message.id!r}"
    concurrency = []
    for index, limit in enumerate(message.concurrency):
        if limit.scope not in _SCOPES:
            raise InvalidArgument(f"{where}: concurrency[{index}].scope {limit.scope} is unknown")
        concurrency.append(ConcurrencyLimit(limit.limit, limit.key or None, _SCOPES[limit.scope]))
    throttle = None
    if message.HasField("throttle"):
        given = message.throttle
        period = _period(given.period, f"{where}: throttle.period")
        throttle = ThrottleLimit(given.limit, period, given.key or None, given.burst or 1)
    rate_limit = None
    if message.HasField("rate_limit"):
        given_rate = message.rate_limit
        period = _period(given_rate.period, f"{where}: rate_limit.period")
        rate_limit = RateLimit(given_rate.limit, period, given_rate.key or None)
    priority = message.priority.run if message.HasField("priority") else None
    debounce = None
    if message.HasField("debounce"):
        given_debounce = message.debounce
        debounce = DebounceOptions(
            _period(given_debounce.period, f"{where}: debounce.period"),
            given_debounce.key or None,
            _period(given_debounce.timeout, f"{where}: debounce.timeout")
            if given_debounce.HasField("timeout")
            else None,
        )
    singleton = None
    if message.HasField("singleton"):
        if message.singleton.mode not in _MODES:
            raise InvalidArgument(f"{where}: singleton.mode {message.singleton.mode} is unknown")
        singleton = SingletonOptions(message.singleton.key or None, _MODES[message.singleton.mode])
    batch = None
    if message.HasField("batch"):
        given_batch = message.batch
        timeout = _period(given_batch.timeout, f"{where}: batch.timeout")
        batch = BatchOptions(given_batch.max_size, timeout, given_batch.key or None)
    return FlowOptions(
        tuple(concurrency),
        throttle,
        rate_limit,
        priority,
        idempotency=message.idempotency or None,
        debounce=debounce,
        singleton=singleton,
        batch=batch,
    )


def fill(message: common_pb2.FunctionDefinition, options: FlowOptions) -> None:
    """Set the definition's flow-control fields from `options`."""
    for limit in options.concurrency:
        scope = (
            common_pb2.CONCURRENCY_SCOPE_APP
            if limit.scope == "app"
            else common_pb2.CONCURRENCY_SCOPE_FUNCTION
        )
        message.concurrency.add(limit=limit.limit, key=limit.key or "", scope=scope)
    if (throttle := options.throttle) is not None:
        message.throttle.limit = throttle.limit
        message.throttle.period.FromTimedelta(throttle.period)
        message.throttle.key = throttle.key or ""
        message.throttle.burst = throttle.burst
    if (rate_limit := options.rate_limit) is not None:
        message.rate_limit.limit = rate_limit.limit
        message.rate_limit.period.FromTimedelta(rate_limit.period)
        message.rate_limit.key = rate_limit.key or ""
    if options.priority is not None:
        message.priority.run = options.priority
    message.idempotency = options.idempotency or ""
    if (debounce := options.debounce) is not None:
        message.debounce.period.FromTimedelta(debounce.period)
        message.debounce.key = debounce.key or ""
        if debounce.timeout is not None:
            message.debounce.timeout.FromTimedelta(debounce.timeout)
    if (singleton := options.singleton) is not None:
        message.singleton.key = singleton.key or ""
        message.singleton.mode = (
            common_pb2.SINGLETON_MODE_CANCEL
            if singleton.mode == "cancel"
            else common_pb2.SINGLETON_MODE_SKIP
        )
    if (batch := options.batch) is not None:
        message.batch.max_size = batch.max_size
        message.batch.timeout.FromTimedelta(batch.timeout)
        message.batch.key = batch.key or ""


def _period(period: Duration, what: str) -> timedelta:
    try:
        return period.ToTimedelta()
    except (OverflowError, ValueError):
        raise InvalidArgument(f"{what} is not a valid duration") from None


def cancel_on(message: common_pb2.FunctionDefinition) -> tuple[CancelCondition, ...]:
    """The cancel_on entries a definition names (checked later: `validation.check_app`)."""
    conditions = []
    for index, given in enumerate(message.cancel_on):
        timeout = None
        if given.HasField("timeout"):
            timeout = _period(given.timeout, f"function {message.id!r}: cancel_on[{index}].timeout")
        conditions.append(
            CancelCondition(given.event, given.match or None, given.condition or None, timeout)
        )
    return tuple(conditions)


def fill_cancel_on(
    message: common_pb2.FunctionDefinition, conditions: tuple[CancelCondition, ...]
) -> None:
    """Set the definition's cancel_on from `conditions`."""
    for condition in conditions:
        added = message.cancel_on.add(
            event=condition.event, match=condition.match or "", condition=condition.condition or ""
        )
        if condition.timeout is not None:
            added.timeout.FromTimedelta(condition.timeout)
