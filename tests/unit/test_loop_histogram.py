"""`LoopHistogram` exposes what prometheus-client's own `Histogram` would for the same
observations (bucket bounds inclusive, cumulative counts, count and sum), per label set."""

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from reverb_telemetry.metrics import LoopHistogram

BUCKETS = (0.001, 0.1, 1.0, 30.0)
VALUES = (0.0005, 0.001, 0.05, 0.1, 0.5, 3.0, 45.0, 0.1)


def _samples(registry: CollectorRegistry) -> list[str]:
    """The exposition's sample lines, without the `_created` series only the library has."""
    return sorted(
        line
        for line in generate_latest(registry).decode().splitlines()
        if line and not line.startswith("#") and "_created" not in line
    )


def test_its_exposition_is_prometheus_clients() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop = LoopHistogram("reverb_step_seconds", "Steps.", ("function_id",), BUCKETS)
    ours.register(loop)
    library = Histogram(
        "reverb_step_seconds", "Steps.", ("function_id",), buckets=BUCKETS, registry=theirs
    )
    for function_id in ("a", "b"):
        observe = loop.timer(function_id)
        for value in VALUES if function_id == "a" else VALUES[:3]:
            observe(value)
            library.labels(function_id).observe(value)
    assert _samples(ours) == _samples(theirs)
    assert 'reverb_step_seconds_bucket{function_id="a",le="0.1"} 5.0' in _samples(ours)


def test_a_timer_needs_every_label() -> None:
    loop = LoopHistogram("reverb_step_seconds", "Steps.", ("function_id",), BUCKETS)
    with pytest.raises(ValueError, match="function_id"):
        loop.timer()
