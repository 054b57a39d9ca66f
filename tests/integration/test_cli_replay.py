"""`reverb replay RUN_ID [--from-step S] [--data JSON]` and the bulk form, as a subprocess
against a real gateway, worker and host."""

from typing import Any

from tests.integration.test_cli import assert_user_error
from tests.integration.test_cli_api import Engine, engine  # noqa: F401 (the fixture)


async def test_replay_prints_the_new_run(engine: Engine) -> None:  # noqa: F811
    charge_id = await _send(engine)
    failed = await engine.finished_run(charge_id)

    replayed = await engine.cli("replay", failed["id"])
    assert replayed.code == 0, replayed
    (replay_id,) = replayed.stdout.split()
    shown = await _run(engine, replay_id)
    assert (shown["replay_of"], shown["event_ids"]) == (failed["id"], [charge_id])

    forked = await engine.cli(
        "replay", failed["id"], "--from-step", "charge-card", "--data", '{"retry": true}'
    )
    assert forked.code == 0, forked
    body = await _run(engine, forked.stdout.strip())
    assert body["replay_from_step"] == "charge-card"
    assert body["event_ids"] != [charge_id]

    unknown = await engine.cli("replay", failed["id"], "--from-step", "nope")
    assert_user_error(unknown, "error: invalid_argument: ")


async def test_bulk_replay_prints_every_new_run(engine: Engine) -> None:  # noqa: F811
    sent = [await _send(engine) for _ in range(2)]
    for event_id in sent:
        await engine.finished_run(event_id)

    replayed = await engine.cli("replay", "--function", "charge", "--status", "failed")

    assert replayed.code == 0, replayed
    new_runs = replayed.stdout.split()
    assert len(new_runs) == 2
    assert "2 runs replayed" in replayed.stderr
    for run_id in new_runs:
        body = await _run(engine, run_id)
        assert body["function_id"] == "charge"
        assert body["replay_of"] is not None
    mixed = await engine.cli("replay", "some-run", "--function", "charge")
    assert_user_error(mixed, "error: --function")


async def _send(mesh: Engine) -> str:
    response = await mesh.http.post("/events", json={"name": "cli.charge"})
    return str(response.json()["ids"][0])


async def _run(mesh: Engine, run_id: str) -> dict[str, Any]:
    return (await mesh.http.get(f"/runs/{run_id}")).json()  # type: ignore[no-any-return]
