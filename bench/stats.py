"""Summaries of repeated measurements: median with min and max, and percentiles."""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Summary:
    """One figure over its repetitions: the median, with the smallest and largest beside it."""

    median: float
    minimum: float
    maximum: float
    repetitions: int


def summarize(values: Sequence[float]) -> Summary:
    """The median, min and max of `values` (one value per repetition)."""
    if not values:
        raise ValueError("no values to summarize")
    return Summary(
        median=statistics.median(values),
        minimum=min(values),
        maximum=max(values),
        repetitions=len(values),
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile (0..1) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower = math.floor(position)
    upper = math.ceil(position)
    weight = position - lower
    return ordered[lower] * (1 - weight) + ordered[upper] * weight
