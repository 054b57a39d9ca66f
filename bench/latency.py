"""Turning a list of latency samples (ms) into the p50/p99 figures of one repetition."""

from collections.abc import Sequence

from bench.stats import percentile


def percentiles(label: str, samples: Sequence[float]) -> dict[str, float]:
    return {f"{label} p50": percentile(samples, 0.50), f"{label} p99": percentile(samples, 0.99)}


def units(*labels: str) -> dict[str, str]:
    return {f"{label} {p}": "ms" for label in labels for p in ("p50", "p99")}
