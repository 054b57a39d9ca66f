"""What a due schedule does now: which ticks start runs, which are missed or skipped.

Pure: the scheduler (`firing`) reads a schedule's row, asks `plan`, and writes the
outcome. The rules (README, "Cron"):

- The due ticks are those whose fire time (the tick plus its jitter) has passed. Only
  the most recent can be on time, and only if it fires within `GRACE` of its fire
  time; every other due tick was missed (no worker could fire it when it fell due).
- `catch_up` decides the missed ones: `skip` runs none (the on-time tick still runs),
  `latest` runs the most recent due tick once, `all` runs every due tick within
  `catch_up_window` (at most `CATCH_UP_LIMIT`, the most recent, oldest first).
- Then `overlap`, while the schedule's previous run has not ended: `allow` starts the
  tick's run anyway, `skip` skips it, `buffer_one` keeps it (one at most; later ones
  are skipped) until that run ends, `cancel_previous` cancels that run and starts the
  newest tick's run (earlier ticks of the same catch-up are skipped).

Each missed and skipped tick has a reason (`missed_reason`, `skipped_reason`: the policy
that left it out), which the scheduler logs and the worker's metrics count by.
"""

import functools
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from reverb.schedules import CatchUp, CronSchedule, Overlap

GRACE = timedelta(seconds=10)
CATCH_UP_LIMIT = 100
# Missed ticks older than what a catch-up looks at are counted one by one up to this
# many, then estimated from their spacing (a schedule every second, down for a week).
COUNT_LIMIT = 1_000

# Why a missed tick started no run: the schedule's `catch_up` (`all`: it was older than
# `catch_up_window`, or beyond the CATCH_UP_LIMIT most recent).
MISSED_REASONS: dict[CatchUp, str] = {
    "skip": "catch_up_skip",
    "latest": "catch_up_latest",
    "all": "catch_up_window",
}
# Why a due tick was skipped while the previous run had not ended: the schedule's
# `overlap` (`buffer_one`: a tick was kept already; `cancel_previous`: a newer tick of
# the same catch-up replaced it). `allow` skips nothing.
SKIPPED_REASONS: dict[Overlap, str] = {
    "allow": "",
    "skip": "previous_running",
    "buffer_one": "buffer_full",
    "cancel_previous": "superseded",
}


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """A due schedule as its row has it."""

    function_id: str
    schedule: CronSchedule
    overlap: Overlap
    catch_up: CatchUp
    catch_up_window: timedelta
    jitter: timedelta
    next_at: datetime
    buffered_at: datetime | None
    # Whether the schedule's latest run has not ended.
    previous_running: bool


@dataclass(slots=True)
class Plan:
    """What to write: the ticks to start runs for (oldest first), the schedule's next
    state, and what was missed or skipped."""

    fires: list[datetime] = field(default_factory=list)
    buffered_at: datetime | None = None
    next_at: datetime | None = None
    fire_at: datetime | None = None
    missed: list[datetime] = field(default_factory=list)
    # Missed ticks too old to list (counted or estimated).
    missed_uncounted: int = 0
    skipped: list[datetime] = field(default_factory=list)
    cancel_previous: bool = False
    # The earliest and the latest missed tick (None: none was missed).
    first_missed: datetime | None = None
    last_missed: datetime | None = None
    # Why the missed and the skipped ticks started no run (MISSED_REASONS, SKIPPED_REASONS).
    missed_reason: str = ""
    skipped_reason: str = ""

    @property
    def missed_count(self) -> int:
        return len(self.missed) + self.missed_uncounted


def jitter_offset(function_id: str, tick: datetime, jitter: timedelta) -> timedelta:
    """The delay of one tick's run: the same on every worker (a hash of function and
    tick), between 0 and `jitter`, in whole milliseconds."""
    if jitter <= timedelta(0):
        return timedelta(0)
    digest = hashlib.sha256(f"{function_id}:{tick.isoformat()}".encode()).digest()
    milliseconds = int(jitter.total_seconds() * 1000)
    return timedelta(milliseconds=int.from_bytes(digest[:8], "big") % (milliseconds + 1))


def fire_time(state: ScheduleState, tick: datetime) -> datetime:
    return tick + jitter_offset(state.function_id, tick, state.jitter)


def plan(state: ScheduleState, now: datetime) -> Plan:
    """What the schedule does at `now` (see the module)."""
    outcome = Plan()
    due, outcome.next_at, outcome.missed_uncounted, older = _due(state, now)
    outcome.fire_at = fire_time(state, outcome.next_at)
    chosen = _caught_up(state, due, now)
    running_ticks = set(chosen)
    outcome.missed = [tick for tick in due if tick not in running_ticks]
    running = state.previous_running
    buffered = state.buffered_at
    if buffered is not None and not running:
        outcome.fires.append(buffered)
        buffered, running = None, True
    for tick in chosen:
        if not running or state.overlap == "allow":
            outcome.fires.append(tick)
            running = True
        elif state.overlap == "cancel_previous":
            outcome.skipped.extend(outcome.fires)
            outcome.fires = [tick]
            outcome.cancel_previous = True
        elif state.overlap == "buffer_one" and buffered is None:
            buffered = tick
        else:
            outcome.skipped.append(tick)
    # A buffered tick waits for the previous run's end, which makes the schedule due
    # (migration 0007's trigger), not for `fire_at`.
    outcome.buffered_at = buffered
    if outcome.missed_count:
        # Uncounted ticks are the oldest: they begin at the schedule's next tick.
        outcome.first_missed = state.next_at if outcome.missed_uncounted else outcome.missed[0]
        outcome.last_missed = outcome.missed[-1] if outcome.missed else older
        outcome.missed_reason = MISSED_REASONS[state.catch_up]
    if outcome.skipped:
        outcome.skipped_reason = SKIPPED_REASONS[state.overlap]
    return outcome


def _due(
    state: ScheduleState, now: datetime
) -> tuple[list[datetime], datetime, int, datetime | None]:
    """The due ticks a catch-up may run (the most recent one always among them), the
    next tick not due, how many older due ticks there were (missed, not listed), and the
    last of those (None: there were none)."""
    schedule = state.schedule
    lookback = GRACE + state.jitter
    if state.catch_up == "all":
        lookback = max(lookback, state.catch_up_window + state.jitter)
    horizon = now - lookback
    uncounted: int = 0
    last_two: tuple[datetime, ...] = ()
    start = state.next_at
    if start < horizon:
        uncounted, last_two = _count(schedule, start, horizon)
        start = horizon
    due, following = _window(schedule, start, now)
    for index, tick in enumerate(due):  # with jitter, a tick past may not fire yet
        if fire_time(state, tick) > now:
            due, following = due[:index], tick
            break
    if not due and last_two:
        # The last of the older ticks is the one a catch-up may run.
        return [last_two[-1]], following, uncounted - 1, last_two[0] if uncounted > 1 else None
    return list(due), following, uncounted, last_two[-1] if last_two else None


@functools.lru_cache(maxsize=1024)
def _window(
    schedule: CronSchedule, start: datetime, now: datetime
) -> tuple[tuple[datetime, ...], datetime]:
    """The ticks from `start` to `now`, and the first after: schedules sharing an
    expression and a next tick (often, at scale) share one computation."""
    due: list[datetime] = []
    for tick in schedule.ticks_after(start - timedelta(microseconds=1)):
        if tick > now:
            return tuple(due), tick
        due.append(tick)
    raise AssertionError("a schedule's ticks never end")  # pragma: no cover


def _count(
    schedule: CronSchedule, start: datetime, end: datetime
) -> tuple[int, tuple[datetime, ...]]:
    """How many ticks fall at or after `start` and before `end` (counted up to
    COUNT_LIMIT, then estimated from the spacing of those), and the last two of them
    (fewer when there are fewer)."""
    before = end - timedelta(microseconds=1)
    ticks = schedule.ticks_between(start, before, COUNT_LIMIT + 1)
    if len(ticks) <= COUNT_LIMIT:
        return len(ticks), tuple(ticks[-2:])
    spacing = (ticks[-1] - ticks[0]) / (len(ticks) - 1)
    count = len(ticks) + int((end - ticks[-1]) / spacing)
    return count, _last_two(schedule, ticks[-2], before, spacing)


def _last_two(
    schedule: CronSchedule, low: datetime, before: datetime, spacing: timedelta
) -> tuple[datetime, ...]:
    """The last two ticks at or before `before`, given `low`, a tick with another after
    it there: a window reaching back two spacings first (a regular schedule's answer),
    then bisection between a start with too many ticks after it and one with too few.
    It ends, since ticks are at least a second apart."""
    high = before
    start = max(low, before - spacing * 2)
    for _ in range(128):
        found = schedule.ticks_between(start, before, COUNT_LIMIT)
        if 2 <= len(found) < COUNT_LIMIT:
            return tuple(found[-2:])
        if len(found) < 2:
            high = start
        else:
            low = start
        start = low + (high - low) / 2
    return tuple(schedule.ticks_between(low, before, 2))  # pragma: no cover


def _caught_up(state: ScheduleState, due: list[datetime], now: datetime) -> list[datetime]:
    """The due ticks that run, oldest first (see `catch_up` in the module)."""
    if not due:
        return []
    latest = due[-1]
    on_time = now - fire_time(state, latest) <= GRACE
    if state.catch_up == "skip":
        return [latest] if on_time else []
    if state.catch_up == "latest":
        return [latest]
    chosen = [tick for tick in due if tick >= now - state.catch_up_window][-CATCH_UP_LIMIT:]
    if on_time and latest not in chosen:
        chosen.append(latest)
    return chosen
