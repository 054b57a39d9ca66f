"""Durations as users write them: "30s", "1d 2h 30m", "500ms", a timedelta, or seconds."""

import math
import re
from datetime import timedelta

Duration = str | int | float | timedelta
"""What every `duration` argument accepts."""

_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)(?![a-z])\s*")


def parse_duration(value: Duration) -> timedelta:
    """The duration `value` names; ValueError (naming `value`) when it names none."""
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"duration {value!r} is negative")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a duration: use '30s', '5m', a timedelta or seconds")
    if isinstance(value, str):
        return _parse_text(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"duration {value!r} must be a finite, non-negative number of seconds")
    return timedelta(seconds=value)


def _parse_text(text: str) -> timedelta:
    total = timedelta(0)
    position = 0
    while position < len(text):
        match = _PART.match(text, position)
        if match is None:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position == 0 or position < len(text):
        raise ValueError(
            f"{text!r} is not a duration: use numbers with units ms, s, m, h, d, w, "
            "e.g. '30s' or '1d 2h 30m'"
        )
    return total
