"""What a due schedule does (`reverb_store.cron.policies.plan`), at times the test
chooses: catch-up after an outage (skip, latest, all within the window, capped), overlap
while the previous run has not ended, jitter."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from reverb.schedules import CronSchedule
from reverb_store.cron.policies import (
    CATCH_UP_LIMIT,
    GRACE,
    ScheduleState,
    jitter_offset,
    plan,
)

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
QUARTER = timedelta(minutes=15)


def state(**changes: object) -> ScheduleState:
    base = ScheduleState(
        function_id="sync",
        schedule=CronSchedule.parse("*/15 * * * *"),
        overlap="allow",
        catch_up="latest",
        catch_up_window=timedelta(hours=1),
        jitter=timedelta(0),
        next_at=T0,
        buffered_at=None,
        previous_running=False,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_tick_on_time_fires_and_the_next_is_the_following_tick() -> None:
    outcome = plan(state(), T0 + timedelta(milliseconds=40))
    assert outcome.fires == [T0]
    assert (outcome.next_at, outcome.fire_at) == (T0 + QUARTER, T0 + QUARTER)
    assert outcome.missed_count == 0


def test_after_three_hours_down_each_catch_up_policy() -> None:
    now = T0 + timedelta(hours=3, minutes=5)  # ticks 09:00 ... 12:00 were missed: 13
    skip = plan(state(catch_up="skip"), now)
    assert (skip.fires, skip.missed_count) == ([], 13)
    latest = plan(state(catch_up="latest"), now)
    assert (latest.fires, latest.missed_count) == ([T0 + timedelta(hours=3)], 12)
    every = plan(state(catch_up="all"), now)
    # Within the hour before now, oldest first: 11:15, 11:30, 11:45, 12:00.
    assert every.fires == [T0 + timedelta(hours=2) + QUARTER * n for n in (1, 2, 3, 4)]
    assert every.missed_count == 9
    for outcome in (skip, latest, every):
        assert outcome.next_at == T0 + timedelta(hours=3, minutes=15)


def test_catch_up_all_is_capped_at_the_most_recent_ticks() -> None:
    seconds = state(schedule=CronSchedule.parse("* * * * * *"), catch_up="all")
    outcome = plan(seconds, T0 + timedelta(minutes=10))
    assert len(outcome.fires) == CATCH_UP_LIMIT
    assert outcome.fires[-1] == T0 + timedelta(minutes=10)
    assert outcome.missed_count == 601 - CATCH_UP_LIMIT


def test_a_tick_later_than_the_grace_is_missed_unless_caught_up() -> None:
    late = T0 + GRACE + timedelta(seconds=1)
    assert plan(state(catch_up="skip"), late).fires == []
    assert plan(state(catch_up="latest"), late).fires == [T0]
    # Only the most recent due tick can be on time: a tick with a later one due was missed.
    two = plan(state(catch_up="skip"), T0 + QUARTER + timedelta(seconds=1))
    assert (two.fires, two.missed_count) == ([T0 + QUARTER], 1)


def test_overlap_while_the_previous_run_has_not_ended() -> None:
    now = T0 + timedelta(seconds=1)
    allow = plan(state(previous_running=True), now)
    assert allow.fires == [T0]
    skip = plan(state(previous_running=True, overlap="skip"), now)
    assert (skip.fires, skip.skipped) == ([], [T0])
    buffered = plan(state(previous_running=True, overlap="buffer_one"), now)
    assert (buffered.fires, buffered.buffered_at, buffered.skipped) == ([], T0, [])
    # One tick is kept; the next ones are skipped while the run goes on.
    full = plan(state(previous_running=True, overlap="buffer_one", buffered_at=T0), now + QUARTER)
    assert (full.fires, full.buffered_at, full.skipped) == ([], T0, [T0 + QUARTER])
    cancel = plan(state(previous_running=True, overlap="cancel_previous"), now)
    assert (cancel.fires, cancel.cancel_previous) == ([T0], True)


def test_a_buffered_tick_fires_once_the_previous_run_ended() -> None:
    outcome = plan(
        state(overlap="buffer_one", buffered_at=T0, next_at=T0 + QUARTER), T0 + timedelta(minutes=3)
    )
    assert (outcome.fires, outcome.buffered_at) == ([T0], None)
    assert outcome.next_at == T0 + QUARTER


def test_catching_up_with_skip_overlap_starts_one_run() -> None:
    outcome = plan(state(catch_up="all", overlap="skip"), T0 + timedelta(minutes=46))
    assert outcome.fires == [T0]
    assert outcome.skipped == [T0 + QUARTER * n for n in (1, 2, 3)]


def test_jitter_delays_a_tick_by_the_same_amount_everywhere() -> None:
    jitter = timedelta(seconds=30)
    offsets = {jitter_offset("sync", T0 + QUARTER * n, jitter) for n in range(50)}
    assert all(timedelta(0) <= offset <= jitter for offset in offsets)
    assert len(offsets) > 40
    assert jitter_offset("sync", T0, jitter) == jitter_offset("sync", T0, jitter)
    jittered = state(jitter=jitter)
    offset = jitter_offset("sync", T0, jitter)
    assert plan(jittered, T0 + offset - timedelta(milliseconds=1)).fires == []
    assert plan(jittered, T0 + offset).fires == [T0]


def test_missed_ticks_carry_their_range_and_the_catch_up_policy_as_reason() -> None:
    now = T0 + timedelta(hours=3, minutes=5)  # ticks 09:00 ... 12:00 were missed: 13
    skip = plan(state(catch_up="skip"), now)
    assert (skip.first_missed, skip.last_missed) == (T0, T0 + timedelta(hours=3))
    assert skip.missed_reason == "catch_up_skip"
    latest = plan(state(catch_up="latest"), now)
    # 12:00 ran: the missed ones end at 11:45.
    assert (latest.first_missed, latest.last_missed) == (T0, T0 + timedelta(hours=2, minutes=45))
    assert latest.missed_reason == "catch_up_latest"
    every = plan(state(catch_up="all"), now)
    assert (every.first_missed, every.last_missed) == (T0, T0 + timedelta(hours=2))
    assert every.missed_reason == "catch_up_window"
    on_time = plan(state(), T0 + timedelta(seconds=1))
    assert (on_time.first_missed, on_time.last_missed, on_time.missed_reason) == (None, None, "")


def test_missed_ticks_too_many_to_list_still_have_their_range() -> None:
    # Every second, down for a day: 86,400 missed, counted then estimated.
    seconds = state(schedule=CronSchedule.parse("* * * * * *"), catch_up="skip")
    outcome = plan(seconds, T0 + timedelta(days=1, milliseconds=500))
    assert outcome.fires == [T0 + timedelta(days=1)]  # on time
    assert outcome.missed_count == 86_400
    assert (outcome.first_missed, outcome.last_missed) == (
        T0,
        T0 + timedelta(days=1, seconds=-1),
    )
    # Every second of each month's first day, down for two months: the ticks bunch up,
    # and the search for the last ones still ends.
    bunched = state(
        schedule=CronSchedule.parse("* * * 1 * *"),
        catch_up="latest",
        next_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    outcome = plan(bunched, datetime(2030, 3, 15, tzinfo=UTC))
    assert outcome.fires == [datetime(2030, 3, 1, 23, 59, 59, tzinfo=UTC)]
    assert outcome.last_missed == datetime(2030, 3, 1, 23, 59, 58, tzinfo=UTC)
    assert outcome.first_missed == datetime(2030, 1, 1, tzinfo=UTC)


def test_skipped_ticks_carry_the_overlap_policy_as_reason() -> None:
    now = T0 + timedelta(seconds=1)
    skip = plan(state(previous_running=True, overlap="skip"), now)
    assert (skip.skipped, skip.skipped_reason) == ([T0], "previous_running")
    full = plan(state(previous_running=True, overlap="buffer_one", buffered_at=T0), now + QUARTER)
    assert (full.skipped, full.skipped_reason) == ([T0 + QUARTER], "buffer_full")
    replaced = plan(
        state(previous_running=True, overlap="cancel_previous", catch_up="all"),
        T0 + timedelta(minutes=46),
    )
    assert replaced.fires == [T0 + QUARTER * 3]
    assert (replaced.skipped, replaced.skipped_reason) == (
        [T0, T0 + QUARTER, T0 + QUARTER * 2],
        "superseded",
    )
    allow = plan(state(previous_running=True), now)
    assert (allow.skipped, allow.skipped_reason) == ([], "")
