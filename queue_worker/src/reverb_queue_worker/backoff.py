"""Retry delays: exponential from a base, doubling, capped, with ±25 % jitter."""

import random
from collections.abc import Callable
from datetime import timedelta

STEP_CAP = timedelta(minutes=10)
HOST_CAP = timedelta(seconds=30)
JITTER = 0.25


def backoff(
    attempt: int,
    *,
    base: timedelta = timedelta(seconds=1),
    cap: timedelta = STEP_CAP,
    uniform: Callable[[float, float], float] = random.uniform,
) -> timedelta:
    """The wait before retrying after failure number `attempt` (0-based).

    `min(base · 2^attempt, cap)`, scaled by a random factor in [0.75, 1.25]
    and never above `cap`. `uniform` is the random source (tests pin it).
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    exponential = base.total_seconds() * 2 ** min(attempt, 64)
    delay = min(exponential, cap.total_seconds())
    jittered = delay * uniform(1 - JITTER, 1 + JITTER)
    return timedelta(seconds=min(jittered, cap.total_seconds()))
