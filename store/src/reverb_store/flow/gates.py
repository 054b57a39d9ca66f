"""The flow-control gates a worker registers, in the order they decide."""

from reverb_store.execution.gates import Gate
from reverb_store.flow.concurrency import ConcurrencyGate
from reverb_store.flow.rate_limits import RateLimitGate
from reverb_store.flow.throttle import ThrottleGate


def flow_gates() -> list[Gate]:
    """Rate limits first (a skipped run takes no throttle slot), then throttling (a start
    in its time), then concurrency (a slot while it executes)."""
    return [RateLimitGate(), ThrottleGate(), ConcurrencyGate()]
