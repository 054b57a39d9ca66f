"""What starts a function: an event name or a cron schedule, checked when declared."""

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import get_args

from croniter import croniter

from reverb._durations import Duration, parse_duration
from reverb.schedules import CatchUp, CronSchedule, Overlap, zone_named

# A function's triggers, events and crons together.
MAX_TRIGGERS = 10


@dataclass(frozen=True)
class EventTrigger:
    """Start a run for every event with this name."""

    name: str


@dataclass(frozen=True)
class CronTrigger:
    """Start a run on every tick of a cron schedule, in `timezone` (None: UTC)."""

    expression: str
    timezone: str | None = None
    overlap: Overlap = "allow"
    catch_up: CatchUp = "latest"
    catch_up_window: timedelta = timedelta(hours=1)
    jitter: timedelta | None = None


Trigger = EventTrigger | CronTrigger


def event(name: str) -> EventTrigger:
    """Trigger on every event named `name`, e.g. `event("user.signed_up")`."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"an event trigger needs a non-empty event name, not {name!r}")
    if name != name.strip():
        raise ValueError(f"event name {name!r} has leading or trailing whitespace")
    return EventTrigger(name)


def cron(
    expression: str,
    tz: str | None = None,
    *,
    overlap: Overlap = "allow",
    catch_up: CatchUp = "latest",
    catch_up_window: Duration = "1h",
    jitter: Duration | None = None,
) -> CronTrigger:
    """Trigger on a cron schedule, e.g. `cron("0 9 * * *", tz="Europe/Paris")`.

    `expression` has 5 fields, or 6 with seconds first (`"*/2 * * * * *"`); a
    `"TZ=Europe/Paris "` prefix names the zone too. `tz` is an IANA zone (UTC by
    default). `overlap` decides what a tick does while the previous run of this
    schedule has not ended: `allow` starts another, `skip` records the tick as
    skipped, `buffer_one` keeps one tick until that run ends, `cancel_previous`
    cancels it first. `catch_up` decides what happens to ticks missed while no worker
    ran: `skip` them, run the `latest` once, or run `all` those within
    `catch_up_window` (oldest first, capped). `jitter` delays each tick's run by up to
    that long (the same delay on every worker).
    """
    if not isinstance(expression, str):
        raise ValueError(f"a cron expression is a string, not {expression!r}")
    text, zone = _zone_prefix(expression, tz)
    normalized = " ".join(text.split())
    _check_expression(normalized, expression)
    if zone is not None:
        zone_named(zone)
    CronSchedule.parse(normalized, zone)
    if overlap not in get_args(Overlap):
        raise ValueError(f"overlap {overlap!r} is not one of {', '.join(get_args(Overlap))}")
    if catch_up not in get_args(CatchUp):
        raise ValueError(f"catch_up {catch_up!r} is not one of {', '.join(get_args(CatchUp))}")
    window = parse_duration(catch_up_window)
    delay = None if jitter is None else parse_duration(jitter)
    return CronTrigger(normalized, zone, overlap, catch_up, window, delay or None)


_PREFIX = re.compile(r"^\s*(?:CRON_)?TZ=(\S+)\s+(.*)$", re.DOTALL)


def _zone_prefix(expression: str, tz: str | None) -> tuple[str, str | None]:
    """The expression without a `TZ=Zone ` prefix, and the zone it or `tz` names."""
    match = _PREFIX.match(expression)
    if match is None:
        return expression, tz
    if tz is not None and tz != match.group(1):
        raise ValueError(
            f"cron expression {expression!r} names the zone {match.group(1)!r}, but tz is {tz!r}"
        )
    return match.group(2), match.group(1)


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
_SECONDS = ("second", 0, 59, list[str]())
_ITEM = re.compile(r"^(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/([0-9]+))?$")


def _check_expression(normalized: str, original: str) -> None:
    """Name the field croniter would refuse (croniter itself decides, in
    `CronSchedule.parse`): its message says only that the expression is invalid."""
    fields = normalized.split(" ") if normalized else []
    if len(fields) not in (5, 6):
        raise ValueError(
            f"cron expression {original!r} must have 5 fields (minute hour day-of-month"
            " month day-of-week), or 6 with seconds first, e.g. '0 9 * * *'"
        )
    if croniter.is_valid(normalized, second_at_beginning=len(fields) == 6):
        return
    labels = _FIELDS if len(fields) == 5 else (_SECONDS, *_FIELDS)
    for text, (label, lowest, highest, names) in zip(fields, labels, strict=True):
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
