"""`reverb dev APP`: PostgreSQL (embedded unless REVERB_DATABASE_URL is set), migrations,
then the gateway, a worker and a host for APP as child processes, in dev mode.

Starting: the gateway is told to report healthy only once the app is registered
(REVERB_GATEWAY_REQUIRED_APPS), and the app's hosts from an earlier session are
forgotten first, so `/healthz` answering 200 means an event sent now triggers the
app's functions. Children die with `reverb dev` (see `supervisor`).

Stopping: Ctrl-C, SIGTERM or SIGHUP stops the worker, then the host, then the gateway
(each SIGTERM, then SIGKILL after 10 s; a second Ctrl-C kills at once), then
the embedded PostgreSQL. If a child exits on its own, `reverb dev` stops the
others and exits with status 1: a crash is never hidden behind a silent restart.
"""

import asyncio
import contextlib
import os
import secrets
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from reverb_cli.app_loading import AppLoadError, load_app
from reverb_cli.console import say
from reverb_cli.database import apply_migrations, forget_hosts, redact
from reverb_cli.errors import CliError
from reverb_cli.readiness import (
    ChildExited,
    Stopped,
    Watch,
    functions_of,
    gateway_ready,
    listening,
    loopback,
)
from reverb_cli.settings import DevSettings, build
from reverb_cli.supervisor import Supervisor

DATA_FOLDER = Path(".reverb") / "pgdata"
STOP_ORDER = ["worker", "host", "gateway"]
# Ctrl-C, a stop request, and the terminal going away (SIGHUP) all stop everything cleanly.
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class _Plan:
    app_spec: str
    app_id: str
    function_count: int
    database_url: str
    database: str  # how the banner describes it (no password)
    settings: DevSettings


@click.command()
@click.argument("app_spec", metavar="APP")
def dev(app_spec: str) -> None:
    """Run everything locally: database, gateway, worker, and a host for APP.

    APP is path/to/file.py or module:attribute. PostgreSQL is embedded (data in
    .reverb/pgdata) unless REVERB_DATABASE_URL is set. Ctrl-C stops everything;
    if a service exits on its own, the others are stopped and the exit status is 1.
    """
    settings = build(DevSettings)
    try:
        app = load_app(app_spec)
    except AppLoadError as error:
        raise CliError(str(error)) from None
    with _database(settings) as (database_url, description):
        plan = _Plan(app_spec, app.id, len(app.functions), database_url, description, settings)
        code = asyncio.run(_run(plan))
    sys.exit(code)


@contextlib.contextmanager
def _database(settings: DevSettings) -> Iterator[tuple[str, str]]:
    if settings.database_url:
        yield settings.database_url, redact(settings.database_url)
        return
    from reverb_cli.embedded import embedded_server, ensure_database

    say(f"starting embedded PostgreSQL (data in {DATA_FOLDER})…", err=True)
    with contextlib.ExitStack() as stack:
        try:
            admin_url = stack.enter_context(embedded_server(Path.cwd() / DATA_FOLDER))
        except Exception as error:
            log = DATA_FOLDER / "log"
            raise CliError(f"cannot start the embedded PostgreSQL: {error} (see {log})") from None
        stack.callback(say, "stopping embedded PostgreSQL…", err=True)
        url = asyncio.run(ensure_database(admin_url))
        yield url, f"embedded PostgreSQL, data in {DATA_FOLDER} ({url})"


async def _run(plan: _Plan) -> int:
    for name in await apply_migrations(plan.database_url):
        say(f"applied migration {name}", err=True)
    await forget_hosts(plan.database_url, plan.app_id)
    supervisor = Supervisor()
    watch = Watch(supervisor)
    loop = asyncio.get_running_loop()
    for number in _SIGNALS:
        loop.add_signal_handler(number, watch.signalled)
    try:
        await _start(plan, supervisor, watch)
        await watch.forever()
    except Stopped:
        say("stopping…", err=True)
    except ChildExited as exited:
        say(
            f"error: the {exited.child.name} exited unexpectedly "
            f"(exit code {exited.child.exit_code}); stopping everything",
            err=True,
        )
        return 1
    finally:
        await supervisor.stop_all(STOP_ORDER, force=watch.forced)
        for number in _SIGNALS:
            loop.remove_signal_handler(number)
    return 0


async def _start(plan: _Plan, supervisor: Supervisor, watch: Watch) -> None:
    settings = plan.settings
    # Readable console logs unless the user asked for JSON.
    base = {"REVERB_LOG_JSON": "false", **os.environ, "REVERB_DEV": "true", "PYTHONUNBUFFERED": "1"}
    signing_key = os.environ.get("REVERB_SIGNING_KEY") or secrets.token_hex(32)
    with_database = {**base, "REVERB_DATABASE_URL": plan.database_url}
    metrics = metrics_addresses(settings.metrics_address)
    gateway_env = {
        **with_database,
        "REVERB_GATEWAY_REQUIRED_APPS": plan.app_id,
        "REVERB_METRICS_ADDRESS": metrics["gateway"],
    }
    await supervisor.start("gateway", ["gateway"], gateway_env)
    await watch.until(listening(settings.http_address), "the gateway to listen")
    signed = {"REVERB_SIGNING_KEY": signing_key}
    worker_env = {**with_database, **signed, "REVERB_METRICS_ADDRESS": metrics["worker"]}
    await supervisor.start("worker", ["worker"], worker_env)
    host_env = {**base, **signed, "REVERB_METRICS_ADDRESS": metrics["host"]}
    await supervisor.start("host", ["host", plan.app_spec], host_env)
    await watch.until(listening(settings.host_address), "the host to listen")
    await watch.until(gateway_ready(settings.http_address), f"app {plan.app_id} to register")
    registered = await watch.until(
        functions_of(settings.http_address, plan.app_id, plan.function_count),
        "the app's functions to be registered",
    )
    say(_banner(plan, registered))


def metrics_addresses(gateway: str) -> dict[str, str]:
    """Where each service serves /metrics in dev mode: the gateway on `gateway`
    (REVERB_METRICS_ADDRESS), the worker and the host on the next two ports (port 0:
    each on a free port of its own)."""
    host, separator, port = gateway.rpartition(":")
    if not separator or not port.isdigit() or int(port) > 65533:
        raise CliError(f"REVERB_METRICS_ADDRESS: {gateway!r} is not host:port")
    number = int(port)
    shifted = (0, 0) if number == 0 else (number + 1, number + 2)
    return {
        "gateway": gateway,
        "worker": f"{host}:{shifted[0]}",
        "host": f"{host}:{shifted[1]}",
    }


def _banner(plan: _Plan, registered: list[str]) -> str:
    settings = plan.settings
    functions = "\n             ".join(registered) or "(none)"
    return "\n".join(
        [
            "",
            "Reverb is running in dev mode (no API keys; Ctrl-C stops everything)",
            f"  HTTP API   http://{loopback(settings.http_address)}",
            f"  gRPC       {loopback(settings.ingress_address)}  (reverb.v1.Ingress)",
            f"  database   {plan.database}",
            "  metrics    "
            + "  ".join(
                f"{name} http://{loopback(address)}/metrics"
                for name, address in metrics_addresses(settings.metrics_address).items()
            ),
            f"  functions  {functions}",
            "",
            "  Try: reverb send NAME --data '{...}', then reverb runs and reverb run ID",
            "",
        ]
    )
