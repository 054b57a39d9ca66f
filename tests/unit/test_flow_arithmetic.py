"""The throttle's and the rate limit's arithmetic (`reverb_store.flow.arithmetic`), as
properties over any sequence of requests: a clock the test drives."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from reverb_store.flow.arithmetic import rate_limit, throttle

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

# Gaps between requests, in milliseconds (many at once, and some long pauses).
gaps = st.lists(st.integers(min_value=0, max_value=5_000), min_size=1, max_size=120)
limits = st.integers(min_value=1, max_value=20)
periods = st.integers(min_value=1, max_value=60_000).map(lambda ms: timedelta(milliseconds=ms))


def arrivals(gap_list: list[int]) -> list[datetime]:
    times, now = [], EPOCH
    for gap in gap_list:
        now += timedelta(milliseconds=gap)
        times.append(now)
    return times


def throttled(times: list[datetime], limit: int, period: timedelta, burst: int) -> list[datetime]:
    """The start each request is given, in order."""
    tat = None
    starts = []
    for now in times:
        step = throttle(tat, now, limit=limit, period=period, burst=burst)
        starts.append(step.start_at)
        tat = step.tat
    return starts


@given(gaps, limits, periods, st.integers(min_value=1, max_value=5))
def test_a_throttle_never_drops_and_never_starts_a_run_early(
    gap_list: list[int], limit: int, period: timedelta, burst: int
) -> None:
    times = arrivals(gap_list)
    starts = throttled(times, limit, period, burst)
    assert len(starts) == len(times)
    assert all(start >= now for start, now in zip(starts, times, strict=True))
    # First come, first started.
    assert starts == sorted(starts)


@given(gaps, limits, periods, st.integers(min_value=1, max_value=5))
def test_a_throttle_starts_at_most_burst_then_one_per_interval(
    gap_list: list[int], limit: int, period: timedelta, burst: int
) -> None:
    starts = throttled(arrivals(gap_list), limit, period, burst)
    interval = period / limit
    # Any window of length `period` holds at most limit + burst - 1 starts; with burst 1,
    # exactly the limit: starts are spaced one interval apart.
    for index, first in enumerate(starts):
        within = [start for start in starts[index:] if start < first + period]
        assert len(within) <= limit + burst - 1
        if burst == 1 and index + 1 < len(starts):
            assert starts[index + 1] - first >= interval - timedelta(microseconds=1)


@given(limits, periods)
def test_an_idle_throttle_starts_a_burst_at_once(limit: int, period: timedelta) -> None:
    burst = 3
    starts = throttled([EPOCH] * (burst + 1), limit, period, burst)
    assert starts[:burst] == [EPOCH] * burst
    assert starts[burst] > EPOCH


@given(gaps, limits, periods)
def test_a_rate_limit_allows_at_most_limit_in_any_window_and_skips_the_rest(
    gap_list: list[int], limit: int, period: timedelta
) -> None:
    kept: tuple[datetime, ...] = ()
    allowed = []
    for now in arrivals(gap_list):
        step = rate_limit(kept, now, limit=limit, period=period)
        kept = step.starts
        if step.allowed:
            allowed.append(now)
        else:
            # Refused only when the window before it is full.
            assert sum(1 for start in allowed if start > now - period) == limit
        # The state never holds more than the window's starts.
        assert len(kept) <= limit
    for index, first in enumerate(allowed):
        assert sum(1 for start in allowed[index:] if start < first + period) <= limit


def test_a_rate_limit_lets_a_run_through_again_once_the_period_has_passed() -> None:
    hour = timedelta(hours=1)
    first = rate_limit((), EPOCH, limit=1, period=hour)
    assert first.allowed
    assert not rate_limit(
        first.starts, EPOCH + hour - timedelta(seconds=1), limit=1, period=hour
    ).allowed
    assert rate_limit(first.starts, EPOCH + hour, limit=1, period=hour).allowed
