"""What starts a function: an event name or a cron schedule, checked when declared."""

import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True)
class EventTrigger:
    """Start a run for every event with this name."""

    name: str


@dataclass(frozen=True)
class CronTrigger:
    """Start a run on a five-field cron schedule, in `timezone` (None: UTC)."""

    expression: str
    timezone: str | None = None


Trigger = EventTrigger | CronTrigger


def event(name: str) -> EventTrigger:
    """Trigger on every event named `name`, e.g. `event("user.signed_up")`."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"an event trigger needs a non-empty event name, not {name!r}")
    if name != name.strip():
        raise ValueError(f"event name {name!r} has leading or trailing whitespace")
    return EventTrigger(name)


def cron(expression: str, tz: str | None = None) -> CronTrigger:
    """Trigger on a five-field cron schedule, e.g. `cron("0 9 * * *", tz="Europe/Paris")`."""
    if not isinstance(expression, str):
        raise ValueError(f"a cron expression is a string, not {expression!r}")
    normalized = " ".join(expression.split())
    _check_expression(normalized, expression)
    if tz is not None:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {tz!r}: use an IANA name such as 'Europe/Paris'"
            ) from None
    return CronTrigger(normalized, tz)


_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (name, lowest, highest, names for values counted from `lowest`)
_FIELDS: tuple[tuple[str, int, int, list[str]], ...] = (
    ("minute", 0, 59, []),
    ("hour", 0, 23, []),
    ("day of month", 1, 31, []),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_ITEM = re.compile(r"^(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/([0-9]+))?$")


def _check_expression(normalized: str, original: str) -> None:
    fields = normalized.split(" ") if normalized else []
    if len(fields) != 5:
        raise ValueError(
            f"cron expression {original!r} must have 5 fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 9 * * *'"
        )
    for text, (label, lowest, highest, names) in zip(fields, _FIELDS, strict=True):
        for item in text.lower().split(","):
            problem = _item_problem(item, lowest, highest, names)
            if problem:
                raise ValueError(f"cron expression {original!r}: {label} {text!r} {problem}")


def _item_problem(item: str, lowest: int, highest: int, names: list[str]) -> str | None:
    match = _ITEM.match(item)
    if match is None:
        return "is not '*', a value, a range or a step ('*/5', '1-5', '0,30')"
    if match.group(2) is not None and int(match.group(2)) == 0:
        return "has a step of 0"
    if match.group(1) == "*":
        return None
    for part in match.group(1).split("-"):
        if part in names:
            continue
        if not part.isdigit() or not lowest <= int(part) <= highest:
            return f"has {part!r} outside {lowest}-{highest}"
    return None
