"""The flow-control gates a worker registers, in the order they decide."""

from reverb_store.execution.gates import Gate
from reverb_store.flow.batch import BatchGate
from reverb_store.flow.concurrency import ConcurrencyGate
from reverb_store.flow.debounce import DebounceGate
from reverb_store.flow.rate_limits import RateLimitGate
from reverb_store.flow.singleton import SingletonGate
from reverb_store.flow.throttle import ThrottleGate


def flow_gates() -> list[Gate]:
    """Debounce and batch first (a run starts with its window's or batch's events, which
    the keys below are computed from), then rate limits (a skipped run takes no throttle
    slot), throttling (a start in its time), singleton (a run skipped or held by it holds
    nothing; one it admits holds the key until it ends), and concurrency last (a slot
    while it executes)."""
    return [
        DebounceGate(),
        BatchGate(),
        RateLimitGate(),
        ThrottleGate(),
        SingletonGate(),
        ConcurrencyGate(),
    ]
