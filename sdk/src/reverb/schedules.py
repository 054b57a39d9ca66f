"""When a cron schedule's ticks fall: a cron expression read in a time zone, across DST.

Shared by the SDK (`cron(...)` is checked once, when declared), the gateway (which
checks a registration from any host) and the scheduler (which fires the ticks), so
that all three agree on every instant. croniter reads the expression; this module
decides what a local time means:

- an expression has 5 fields (minute hour day-of-month month day-of-week) or 6, with
  seconds first;
- a tick is a local wall-clock time in the schedule's IANA zone (UTC by default);
- a local time that does not exist (the spring gap) fires at the first valid instant
  after it, the end of the gap (02:30 Europe/Paris on the last Sunday of March fires
  at 03:00 CEST); ticks merged so fire once;
- a local time that happens twice (the autumn fold) fires once, at its first
  occurrence (the summer-time one): the repeated hour fires nothing.
"""

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

__all__ = ["CatchUp", "CronSchedule", "Overlap", "zone_named"]

Overlap = Literal["allow", "skip", "buffer_one", "cancel_previous"]
"""What a tick does while the schedule's previous run has not ended."""

CatchUp = Literal["skip", "latest", "all"]
"""What becomes of ticks missed while no worker could fire them."""


def zone_named(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError naming it when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Paris'"
        ) from None


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A cron expression (normalized: single spaces) in an IANA time zone."""

    expression: str
    timezone: str = "UTC"

    @classmethod
    def parse(cls, expression: str, timezone: str | None = None) -> "CronSchedule":
        """The schedule, checked with croniter: ValueError naming what is wrong."""
        normalized = " ".join(expression.split())
        zone = timezone or "UTC"
        zone_named(zone)
        fields = normalized.split(" ") if normalized else []
        if len(fields) not in (5, 6):
            raise ValueError(
                f"cron expression {expression!r} must have 5 fields (minute hour day-of-month"
                " month day-of-week), or 6 with seconds first, e.g. '0 9 * * *'"
            )
        if not croniter.is_valid(normalized, second_at_beginning=len(fields) == 6):
            raise ValueError(f"cron expression {expression!r} is not valid")
        schedule = cls(normalized, zone)
        try:
            schedule.after(datetime(2000, 1, 1, tzinfo=UTC))
        except (CroniterBadDateError, CroniterBadCronError):
            raise ValueError(f"cron expression {expression!r} never fires") from None
        return schedule

    @property
    def has_seconds(self) -> bool:
        return self.expression.count(" ") == 5

    def after(self, instant: datetime) -> datetime:
        """The first tick strictly after `instant` (aware), in UTC."""
        return next(self.ticks_after(instant))

    def ticks_after(self, instant: datetime) -> Iterator[datetime]:
        """Every tick strictly after `instant` (aware), in UTC, in increasing order."""
        zone = ZoneInfo(self.timezone)
        wall = instant.astimezone(zone).replace(tzinfo=None)
        last = instant.astimezone(UTC)
        while True:
            wall = _next_wall(self.expression, self.has_seconds, wall)
            tick = _instant_of(wall, zone)
            if tick > last:
                last = tick
                yield tick

    def ticks_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """The ticks at or after `start` and at or before `end` (at most `limit`, the
        earliest), in UTC."""
        ticks: list[datetime] = []
        if end < start or limit <= 0:
            return ticks
        for tick in self.ticks_after(start - timedelta(microseconds=1)):
            if tick > end or len(ticks) == limit:
                break
            ticks.append(tick)
        return ticks


@functools.lru_cache(maxsize=256)
def _iterator(expression: str, has_seconds: bool) -> croniter:
    """The expression expanded once (most of croniter's cost), moved to each start."""
    return croniter(expression, ret_type=datetime, second_at_beginning=has_seconds)


def _next_wall(expression: str, has_seconds: bool, wall: datetime) -> datetime:
    """The first local wall-clock time after `wall` that the expression matches."""
    iterator = _iterator(expression, has_seconds)
    iterator.set_current(wall, force=True)
    following: datetime = iterator.get_next(datetime)
    return following


def _instant_of(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant a local wall-clock time fires at (see the module's DST rules)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first  # it exists; in a fold, fold=0 is its first occurrence
    # In a gap: fold=0 reads it with the offset before the transition (an instant after
    # the gap), fold=1 with the one after (before it). The transition is between them:
    # the first instant whose wall-clock time is at or past `wall`.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)
