"""`reverb cron trigger FN`, `reverb cron backfill FN --from --to` and the next fire time in
`reverb functions`, as a subprocess against a real gateway, worker and host; the host
registers its cron triggers (with their policies) through RegisterApp."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

import reverb
from reverb import Context, cron
from tests.integration.test_cli import assert_user_error
from tests.integration.test_cli_api import Engine, running_engine

app = reverb.App("cli-cron")


@app.function(
    "nightly",
    trigger=cron("TZ=Europe/Paris 0 3 * * *", overlap="skip", catch_up="all", jitter="1m"),
)
async def nightly(ctx: Context) -> str:
    return str(ctx.event.data["scheduled_at"])


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[Engine]:
    async with running_engine(database_url, app) as running:
        yield running


async def test_functions_show_the_next_fire_time(engine: Engine) -> None:
    [function] = (await engine.http.get("/functions")).json()["functions"]
    [trigger] = function["triggers"]
    assert {key: trigger[key] for key in ("cron", "timezone", "overlap", "catch_up")} == {
        "cron": "0 3 * * *",
        "timezone": "Europe/Paris",
        "overlap": "skip",
        "catch_up": "all",
    }
    assert (trigger["jitter_seconds"], trigger["last_at"]) == (60.0, None)
    next_at = datetime.fromisoformat(trigger["next_at"])
    assert next_at > datetime.now(UTC)

    listed = await engine.cli("functions")

    assert listed.code == 0, listed
    header, row = listed.stdout.splitlines()
    assert header.split()[-2:] == ["NEXT", "(UTC)"]
    assert row.endswith(next_at.strftime("%Y-%m-%d %H:%M:%S"))
    assert "cron 0 3 * * * (Europe/Paris)" in row


async def test_trigger_and_backfill(engine: Engine) -> None:
    triggered = await engine.cli("cron", "trigger", "nightly")
    assert triggered.code == 0, triggered
    [event_id] = triggered.stdout.split()
    assert event_id.startswith("reverb-cron:nightly:")
    await engine.finished_run(event_id)

    range_ = ("--from", "2026-01-05T00:00:00Z", "--to", "2026-01-07T00:00:00Z")
    filled = await engine.cli("cron", "backfill", "nightly", *range_)
    assert filled.code == 0, filled
    # 03:00 in Paris (CET) is 02:00 UTC.
    assert filled.stdout.split() == [
        "reverb-cron:nightly:2026-01-05T02:00:00Z",
        "reverb-cron:nightly:2026-01-06T02:00:00Z",
    ]
    assert "2 ticks started, 0 had run already" in filled.stderr
    for backfilled in filled.stdout.split():
        run = await engine.finished_run(backfilled)
        assert run["output"] == backfilled.removeprefix("reverb-cron:nightly:")

    again = await engine.cli("cron", "backfill", "nightly", *range_)
    assert (again.stdout, again.code) == ("", 0)
    assert "0 ticks started, 2 had run already" in again.stderr

    unknown = await engine.cli("cron", "trigger", "nothing")
    assert_user_error(unknown, "error: not_found: ")
    # Manual ticks are not the schedule's: its last run is unchanged.
    [function] = (await engine.http.get("/functions")).json()["functions"]
    assert function["triggers"][0]["last_at"] is None
