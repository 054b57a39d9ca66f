"""Recovery times, from the commit times of the steps: how long after a disruption the
engine commits steps again, and how long until it does so at its usual rate."""

import bisect
import statistics
from dataclasses import dataclass

WINDOW = 1.0  # seconds over which a rate is measured
STRIDE = 0.1


@dataclass(frozen=True)
class Recovery:
    # Seconds from the disruption (the kill, or the database accepting again) until the
    # first step commit after it, and until a 1 s window reaches half the usual rate.
    first_commit: float | None
    usual_rate: float | None


def usual_rate(commits: list[float], start: float, end: float) -> float:
    """The median number of step commits per WINDOW between `start` and `end`."""
    counts = []
    moment = start
    while moment + WINDOW <= end:
        counts.append(_count(commits, moment, moment + WINDOW))
        moment += WINDOW
    return float(statistics.median(counts)) if counts else 0.0


def recovery(commits: list[float], moment: float, rate: float, until: float) -> Recovery:
    """`commits` sorted; the rate is measured in windows starting at `moment` and later,
    up to `until` (past it the load itself has ended)."""
    index = bisect.bisect_right(commits, moment)
    first = commits[index] - moment if index < len(commits) else None
    start = moment
    while start + WINDOW <= until:
        if _count(commits, start, start + WINDOW) >= rate / 2:
            return Recovery(first, start + WINDOW - moment)
        start += STRIDE
    return Recovery(first, None)


def longest_gap(commits: list[float], start: float, end: float) -> float:
    """The longest time between two step commits within [start, end]."""
    inside = [start, *(c for c in commits if start <= c <= end), end]
    return max((b - a for a, b in zip(inside, inside[1:], strict=False)), default=0.0)


def _count(commits: list[float], start: float, end: float) -> int:
    return bisect.bisect_left(commits, end) - bisect.bisect_left(commits, start)


def histogram(commits: list[float], start: float, end: float) -> list[int]:
    """Commits in each second from `start` to `end`."""
    return [
        _count(commits, start + second, start + second + 1)
        for second in range(int(end - start) + 1)
    ]
