"""The `reverb` command group. Each command's module is imported only when it runs, so a
client command does not pay for importing the services."""

import importlib

import click

# command name -> "module:attribute" inside reverb_cli
COMMANDS = {
    "dev": "dev:dev",
    "migrate": "services:migrate",
    "gateway": "services:gateway",
    "worker": "services:worker",
    "host": "services:host",
    "send": "api_commands:send",
    "runs": "api_commands:runs",
    "run": "api_commands:run",
    "functions": "api_commands:functions",
    "events": "api_commands:events",
    "cancel": "control_commands:cancel",
    "pause": "control_commands:pause",
    "resume": "control_commands:resume",
    "logs": "logs_command:logs",
    "replay": "replaying:replay",
    "cron": "cron_commands:cron",
    "keys": "keys:keys",
    "certs": "certificates:certs",
    "check": "check:check",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(f"reverb_cli.{module_name}"), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="reverb-cli", prog_name="reverb")
def cli() -> None:
    """Reverb: a self-hosted durable workflow engine.

    Environment: REVERB_URL and REVERB_API_KEY for the client commands,
    REVERB_DATABASE_URL for migrate/gateway/worker/keys (and for dev, to use
    that database instead of an embedded PostgreSQL). See the README.
    """


def main() -> None:
    cli(prog_name="reverb")
