"""The arithmetic of throttles and rate limits: pure functions of the state and the time.

Throttle: the generic cell rate algorithm (GCRA). Starts are spaced
`period / limit` apart (the emission interval); `burst` of them may start at once.
The state is one time, the theoretical arrival time (`tat`): the start of the next
free slot if no burst were allowed. A start at `now` is allowed when
`max(tat, now) - (burst - 1) * interval <= now`; else it is given the first time it
would be, and the slot is reserved for it (a throttled run waits for its own slot, so
the runs behind it are not woken to be held again).

Rate limit: a sliding window. At most `limit` starts in any window of `period`; the
state is the times of the starts within the last period.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class ThrottleStep:
    # When the run may start (`<= now`: at once).
    start_at: datetime
    # The key's new theoretical arrival time.
    tat: datetime


def throttle(
    tat: datetime | None, now: datetime, *, limit: int, period: timedelta, burst: int
) -> ThrottleStep:
    """The slot a run asking to start at `now` gets, and the key's next state."""
    interval = emission_interval(period, limit)
    base = now if tat is None or tat < now else tat
    start_at = max(now, base - (burst - 1) * interval)
    return ThrottleStep(start_at, max(base, start_at) + interval)


def emission_interval(period: timedelta, limit: int) -> timedelta:
    """`period / limit`, rounded up to the microsecond: rounded to the nearest, `limit`
    intervals could be shorter than the period and let one start too many into it."""
    micros = period // timedelta(microseconds=1)
    return timedelta(microseconds=-(-micros // limit))


@dataclass(frozen=True, slots=True)
class RateStep:
    allowed: bool
    # The starts within the window ending at `now`, with this one if allowed.
    starts: tuple[datetime, ...]


def rate_limit(
    starts: Sequence[datetime], now: datetime, *, limit: int, period: timedelta
) -> RateStep:
    """Whether a run may start at `now`, given the earlier starts of its key."""
    recent = tuple(start for start in starts if start > now - period)
    if len(recent) >= limit:
        return RateStep(False, recent)
    return RateStep(True, (*recent, now))
