"""The CLI's own configuration (environment variables prefixed REVERB_).

The services' settings classes live in their packages; the commands that start
a service build those. These cover what the CLI itself needs.
"""

from typing import TypeVar

import pydantic
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from reverb_cli.errors import ConfigurationError
from reverb_store.urls import DatabaseUrl

_PREFIX = "REVERB_"


class ClientSettings(BaseSettings):
    """Where the HTTP API is, and the API key to send."""

    model_config = SettingsConfigDict(env_prefix=_PREFIX, extra="ignore")

    url: str = "http://127.0.0.1:8288"
    api_key: SecretStr | None = None


class DatabaseSettings(BaseSettings):
    """For commands that talk to PostgreSQL directly (`migrate`, `keys`)."""

    model_config = SettingsConfigDict(env_prefix=_PREFIX, extra="ignore")

    database_url: DatabaseUrl


class DevSettings(BaseSettings):
    """`reverb dev`: an external database if given, and the addresses the services bind."""

    model_config = SettingsConfigDict(env_prefix=_PREFIX, extra="ignore")

    database_url: DatabaseUrl | None = None
    http_address: str = "127.0.0.1:8288"
    ingress_address: str = "127.0.0.1:8289"
    host_address: str = "127.0.0.1:8290"
    # The gateway's /metrics; the worker's and the host's are on the next two ports.
    metrics_address: str = "127.0.0.1:9464"


Settings = TypeVar("Settings", bound=BaseSettings)


def build(settings_class: type[Settings]) -> Settings:
    """Build a settings object from the environment, or fail with a readable message
    (exit status 2)."""
    try:
        return settings_class()
    except pydantic.ValidationError as error:
        prefix = str(settings_class.model_config.get("env_prefix") or "")
        # A nested setting's variable joins its path with the nested delimiter
        # (`REVERB_WEBHOOKS__GH__SECRET`), which is how the user wrote it.
        nested = str(settings_class.model_config.get("env_nested_delimiter") or "_")
        problems = "; ".join(
            f"{prefix}{nested.join(str(part) for part in problem['loc']).upper()}:"
            f" {problem['msg'].removeprefix('Value error, ')}"
            for problem in error.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None
