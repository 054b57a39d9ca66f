"""When cron ticks fall (`reverb.schedules`) and what `cron(...)` accepts: 5 or 6 fields,
IANA zones and the `TZ=` prefix, DST decided (the spring gap fires at the first valid
instant after it, the autumn fold once, at its first occurrence)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import reverb
from reverb import CronTrigger, cron, event
from reverb.schedules import CronSchedule

PARIS = ZoneInfo("Europe/Paris")


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=PARIS)


def test_a_daily_tick_in_the_spring_gap_fires_when_the_gap_ends() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Paris")
    ticks = schedule.ticks_between(paris(2026, 3, 28), paris(2026, 3, 30, 12), 10)
    # 02:30 does not exist on 29 March 2026 (02:00 CET -> 03:00 CEST): 03:00 CEST.
    assert [tick.astimezone(PARIS).isoformat() for tick in ticks] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_ticks_inside_the_gap_fire_once_at_its_end() -> None:
    schedule = CronSchedule.parse("*/15 * * * *", "Europe/Paris")
    ticks = schedule.ticks_between(paris(2026, 3, 29, 1, 30), paris(2026, 3, 29, 3, 30), 20)
    assert [tick.astimezone(PARIS).strftime("%H:%M%z") for tick in ticks] == [
        "01:30+0100",
        "01:45+0100",
        # 02:00, 02:15, 02:30, 02:45 and 03:00 are one instant: the gap's end.
        "03:00+0200",
        "03:15+0200",
        "03:30+0200",
    ]


def test_a_time_in_the_autumn_fold_fires_once_at_its_first_occurrence() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Paris")
    ticks = schedule.ticks_between(paris(2026, 10, 24), paris(2026, 10, 26, 12), 10)
    # 02:30 happens twice on 25 October 2026 (CEST, then CET): the CEST one only.
    assert [tick.isoformat() for tick in ticks] == [
        "2026-10-24T00:30:00+00:00",
        "2026-10-25T00:30:00+00:00",
        "2026-10-26T01:30:00+00:00",
    ]
    hourly = CronSchedule.parse("0 * * * *", "Europe/Paris")
    fold = hourly.ticks_between(
        datetime(2026, 10, 24, 23, tzinfo=UTC), datetime(2026, 10, 25, 3, tzinfo=UTC), 10
    )
    # 02:00 CEST (00:00 UTC) fires; the repeated 02:00 CET (01:00 UTC) does not.
    assert [tick.strftime("%H:%M") for tick in fold] == ["23:00", "00:00", "02:00", "03:00"]


def test_a_six_field_expression_has_seconds_first() -> None:
    schedule = CronSchedule.parse("*/2 * * * * *")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert schedule.ticks_between(start, start + timedelta(seconds=5), 10) == [
        start + timedelta(seconds=offset) for offset in (0, 2, 4)
    ]
    assert schedule.after(start + timedelta(seconds=4)) == start + timedelta(seconds=6)


def test_cron_takes_the_policies_and_a_tz_prefix() -> None:
    trigger = cron(
        "TZ=Europe/Paris 0  9 * * 1-5",
        overlap="buffer_one",
        catch_up="all",
        catch_up_window="6h",
        jitter="30s",
    )
    assert trigger == CronTrigger(
        "0 9 * * 1-5",
        "Europe/Paris",
        "buffer_one",
        "all",
        timedelta(hours=6),
        timedelta(seconds=30),
    )
    assert cron("*/2 * * * * *") == CronTrigger("*/2 * * * * *")


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda: cron("0 9 * * *", overlap="queue"), "overlap 'queue'"),  # type: ignore[arg-type]
        (lambda: cron("0 9 * * *", catch_up="some"), "catch_up 'some'"),  # type: ignore[arg-type]
        (lambda: cron("0 9 * * *", catch_up_window="soon"), "duration"),
        (lambda: cron("TZ=Mars/Olympus 0 9 * * *"), "unknown time zone 'Mars/Olympus'"),
        (lambda: cron("TZ=UTC 0 9 * * *", tz="Europe/Paris"), "but tz is"),
        (lambda: cron("0 0 30 2 *"), "never fires"),
        (lambda: cron("60 * * * * *"), "second '60'"),
        (lambda: cron("1 2 3 4 5 6 7"), "6 with seconds first"),
    ],
)
def test_bad_cron_triggers_say_what_is_wrong(call: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        call()  # type: ignore[operator]


async def _handler(ctx: reverb.Context) -> None:
    return None


def test_a_function_has_at_most_ten_triggers() -> None:
    app = reverb.App("limits")
    ten = [event(f"e{number}") for number in range(9)] + [cron("0 9 * * *")]
    app.function("ten", trigger=ten)(_handler)
    with pytest.raises(ValueError, match="11 triggers: at most 10, events and crons together"):
        app.function("eleven", trigger=[*ten, cron("0 10 * * *")])(_handler)


def test_one_cron_twice_with_two_policies_is_refused() -> None:
    twice = [cron("0 9 * * *"), cron("0 9 * * *", overlap="skip")]
    with pytest.raises(ValueError, match="a cron appears twice"):
        reverb.App("twice").function("f", trigger=twice)(_handler)
