"""Retry delays double from one second, stop at ten minutes, and are spread by ±25 %."""

from datetime import timedelta

import pytest

from reverb_queue_worker.backoff import backoff


def middle(low: float, high: float) -> float:
    return (low + high) / 2


def test_delays_double_from_one_second() -> None:
    delays = [backoff(attempt, uniform=middle).total_seconds() for attempt in range(5)]
    assert delays == [1, 2, 4, 8, 16]


def test_delays_stop_growing_at_ten_minutes() -> None:
    assert backoff(9, uniform=middle) == timedelta(minutes=8, seconds=32)
    assert backoff(10, uniform=middle) == timedelta(minutes=10)
    assert backoff(1000, uniform=middle) == timedelta(minutes=10)


def test_jitter_spreads_delays_within_a_quarter() -> None:
    delays = {backoff(3).total_seconds() for _ in range(200)}
    assert all(6 <= delay <= 10 for delay in delays)
    assert len(delays) > 100  # not one fixed value


def test_jitter_never_exceeds_the_cap() -> None:
    def highest(low: float, high: float) -> float:
        return high

    assert backoff(50, uniform=highest) == timedelta(minutes=10)
    assert backoff(0, uniform=highest) == timedelta(seconds=1.25)


def test_base_and_cap_are_configurable() -> None:
    delay = backoff(2, base=timedelta(milliseconds=10), cap=timedelta(seconds=30), uniform=middle)
    assert delay == timedelta(milliseconds=40)
    assert backoff(20, cap=timedelta(seconds=30), uniform=middle) == timedelta(seconds=30)


def test_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff(-1)
