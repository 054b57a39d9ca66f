"""The `reverb` command: local dev on an embedded PostgreSQL, the three services, and a
client for the HTTP API. Run `reverb --help`; the entry point is `reverb_cli.commands`."""

__all__: list[str] = []
