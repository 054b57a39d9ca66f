"""Commands that run Reverb's parts: `migrate`, `gateway`, `worker`, `host APP`.

Each builds its service's settings from the environment here, at the entry
point, and hands them to the service's `serve`/`run` (which set up logging and
stop cleanly on SIGINT/SIGTERM). Service packages are imported inside the
commands so that the client commands start fast.
"""

import asyncio

import click

from reverb_cli.app_loading import AppLoadError, load_app
from reverb_cli.database import apply_migrations
from reverb_cli.errors import CliError, ConfigurationError
from reverb_cli.running import run_until_signalled
from reverb_cli.settings import DatabaseSettings, build


@click.command()
def migrate() -> None:
    """Apply the database migrations (REVERB_DATABASE_URL)."""
    settings = build(DatabaseSettings)
    applied = asyncio.run(apply_migrations(settings.database_url))
    for name in applied:
        click.echo(f"applied {name}")
    if not applied:
        click.echo("the database is up to date")


@click.command()
def gateway() -> None:
    """Run the gateway: the HTTP API and the Ingress gRPC service."""
    from reverb_ingress_gateway import GatewaySettings, UnsafeDevMode, serve

    settings = build(GatewaySettings)
    try:
        run_until_signalled("gateway", lambda: serve(settings))
    except (UnsafeDevMode, ValueError) as error:
        raise ConfigurationError(f"gateway: {error}") from None


@click.command()
def worker() -> None:
    """Run a queue worker (run as many as the load needs)."""
    from reverb_queue_worker import WorkerSettings, run

    settings = build(WorkerSettings)
    run_until_signalled("worker", lambda: run(settings))


@click.command()
@click.argument("app_spec", metavar="APP")
def host(app_spec: str) -> None:
    """Serve the functions of APP: path/to/file.py or module:attribute."""
    from reverb_function_host import HostSettings, InsecureHostError, serve, signing_keyring

    settings = build(HostSettings)
    try:
        signing_keyring(settings)
    except InsecureHostError as error:
        raise ConfigurationError(str(error)) from None
    try:
        app = load_app(app_spec)
    except AppLoadError as error:
        raise CliError(str(error)) from None
    run_until_signalled("host", lambda: serve(app, settings))
