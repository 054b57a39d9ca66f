"""Commands that control runs in flight through a running gateway: cancel, pause, resume."""

from urllib.parse import quote

import click
import orjson

from reverb_cli.api_commands import client_from_settings
from reverb_cli.errors import CliError

# The statuses a run can be cancelled from (the API refuses the others).
CANCELLABLE = ("queued", "running", "sleeping", "waiting", "paused")


@click.command()
@click.argument("run_id", metavar="RUN_ID", required=False)
@click.option("--function", "function_id", default=None, help="Cancel this function's runs.")
@click.option(
    "--from", "created_from", default=None, help="With --function: runs created at or after."
)
@click.option("--to", "created_to", default=None, help="With --function: runs created before.")
@click.option(
    "--status", type=click.Choice(CANCELLABLE), default=None, help="With --function: only these."
)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def cancel(
    run_id: str | None,
    function_id: str | None,
    created_from: str | None,
    created_to: str | None,
    status: str | None,
    as_json: bool,
) -> None:
    """Cancel the run RUN_ID, or the runs of --function created between --from and --to.

    Times are ISO 8601 (UTC unless an offset is given) or Unix milliseconds. A running
    run stops at its next step boundary; the runs it invoked are cancelled with it.
    """
    if (run_id is None) == (function_id is None):
        raise CliError("give a RUN_ID, or --function with --from and --to")
    with client_from_settings() as client:
        if run_id is not None:
            if created_from or created_to or status:
                raise CliError("--from, --to and --status go with --function, not a RUN_ID")
            body = client.post(f"/runs/{quote(run_id, safe='')}/cancel", {})
        else:
            if created_from is None or created_to is None:
                raise CliError("--function needs --from and --to")
            request = {"function": function_id, "from": created_from, "to": created_to}
            if status is not None:
                request["status"] = status
            body = client.post("/runs/cancel", request)
    if as_json:
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    elif run_id is not None:
        click.echo(f"{body['id']} {body['status']}")
    else:
        count = body.get("count", 0)
        click.echo(f"cancelled {count} run{'' if count == 1 else 's'}")


@click.command()
@click.argument("function_id", metavar="FUNCTION")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def pause(function_id: str, as_json: bool) -> None:
    """Pause FUNCTION: its events start no runs (each is recorded as skipped), and its runs
    in flight stop at their next step boundary until it is resumed."""
    with client_from_settings() as client:
        body = client.post(f"/functions/{quote(function_id, safe='')}/pause", {})
    if as_json:
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(f"{body['id']} paused since {body['paused_at']}")


@click.command()
@click.argument("function_id", metavar="FUNCTION")
@click.option("--replay-skipped", is_flag=True, help="Also start the runs it skipped while paused.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def resume(function_id: str, replay_skipped: bool, as_json: bool) -> None:
    """Resume FUNCTION: its paused runs go on from where they stopped."""
    with client_from_settings() as client:
        body = client.post(
            f"/functions/{quote(function_id, safe='')}/resume",
            {"replay_skipped": replay_skipped},
        )
    if as_json:
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return
    line = f"{body['id']} resumed: {body['resumed_runs']} paused run(s) go on"
    if replay_skipped:
        line += f", {body['replayed_runs']} skipped run(s) started"
    click.echo(line)
