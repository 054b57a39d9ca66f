"""The gateway's configuration, read from REVERB_* environment variables at the entry point."""

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REVERB_", extra="ignore", frozen=True)

    database_url: str
    # Where the HTTP API listens, "host:port" (port 0: any free port).
    http_address: str = "127.0.0.1:8288"
    # Where the reverb.v1.Ingress gRPC service listens.
    ingress_address: str = "127.0.0.1:8289"
    # Dev mode: no API keys, and both servers must bind a loopback address.
    dev: bool = False
    # Largest event, as JSON bytes of its data.
    max_event_bytes: int = Field(default=512 * 1024, gt=0)
    # Largest request body (HTTP) or message (gRPC).
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_events_per_request: int = Field(default=5000, gt=0)
    database_pool_size: int = Field(default=20, gt=0)
    # Seconds to wait for a database connection before answering "unavailable".
    database_timeout: float = Field(default=5.0, gt=0)
    # Seconds a verified API key is trusted without asking the database again.
    api_key_cache_seconds: float = Field(default=30.0, ge=0)
    # Apps that must be registered (a host of each has registered it) before /healthz and
    # gRPC health report healthy, comma-separated ("shop,billing"); `reverb dev` names its app.
    gateway_required_apps: Annotated[tuple[str, ...], NoDecode] = ()
    # Seconds between the health checks that keep gRPC health (Check and Watch) up to date.
    health_check_interval: float = Field(default=1.0, gt=0)
    # Longest host lease granted, in seconds (a host asks for REVERB_HOST_LEASE_SECONDS):
    # how long at most a host that died without releasing its lease may still be chosen.
    host_lease_max_seconds: float = Field(default=300.0, ge=0.1)
    log_json: bool = True
    log_level: str = "info"

    @field_validator("gateway_required_apps", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value
