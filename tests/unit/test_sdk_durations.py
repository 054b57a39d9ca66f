"""Durations as users write them, and clear errors for anything else."""

import math
from datetime import timedelta

import pytest

from reverb import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("14d", timedelta(days=14)),
        ("1w", timedelta(weeks=1)),
        ("500ms", timedelta(milliseconds=500)),
        ("1d 2h 30m", timedelta(days=1, hours=2, minutes=30)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(minutes=90)),
        (" 0s ", timedelta(0)),
    ],
)
def test_text_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(minutes=3), timedelta(minutes=3)),
        (90, timedelta(seconds=90)),
        (0.25, timedelta(milliseconds=250)),
    ],
)
def test_timedelta_and_seconds(value: timedelta | float, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "   ", "soon", "10", "5 minutes", "3y", "5M", "2h junk", "-5s", "1d -2h", "s", "5mm"],
)
def test_bad_text_names_the_input(value: str) -> None:
    with pytest.raises(ValueError, match="is not a duration") as raised:
        parse_duration(value)
    assert repr(value) in str(raised.value)


@pytest.mark.parametrize("value", [-1, -0.5, math.inf, math.nan, timedelta(seconds=-1)])
def test_negative_or_infinite_durations_are_refused(value: float | timedelta) -> None:
    with pytest.raises(ValueError, match="negative|non-negative"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, None, [1], b"1d"])
def test_other_types_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(value)  # type: ignore[arg-type]
