"""The gateway's configuration, read from REVERB_* environment variables at the entry point."""

from pathlib import Path
from typing import Annotated, Self

from pydantic import AfterValidator, Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from reverb_ingress_gateway.webhooks.sources import WebhookSource, source_names
from reverb_store.logs.settings import LogSettings
from reverb_store.urls import DatabaseUrl
from reverb_telemetry.metrics import checked_address


class GatewaySettings(LogSettings):
    """REVERB_LOG_SINK and the MongoDB settings come from `LogSettings` (the logs API reads
    the sink the workers write)."""

    model_config = SettingsConfigDict(
        env_prefix="REVERB_", extra="ignore", frozen=True, env_nested_delimiter="__"
    )

    database_url: DatabaseUrl
    # Where the HTTP API listens, "host:port" (port 0: any free port).
    http_address: str = "127.0.0.1:8288"
    # Where the reverb.v1.Ingress gRPC service listens.
    ingress_address: str = "127.0.0.1:8289"
    # PEM files for the Ingress gRPC listener: its certificate and key (TLS), and the CA
    # whose certificates callers must present (mutual TLS). All unset: plaintext gRPC.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
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
    # Seconds a verified API key is trusted without asking the database again (a change to
    # the keys, such as a revocation, drops the cache at once: see auth.py).
    api_key_cache_seconds: float = Field(default=30.0, ge=0)
    # Seconds an unknown key is remembered as unknown, so a flood of wrong keys costs no
    # database query each (creating a key drops this cache at once too).
    api_key_unknown_cache_seconds: float = Field(default=5.0, ge=0)
    # Apps that must be registered (a host of each has registered it) before /healthz and
    # gRPC health report healthy, comma-separated ("shop,billing"); `reverb dev` names its app.
    gateway_required_apps: Annotated[tuple[str, ...], NoDecode] = ()
    # Seconds between the health checks that keep gRPC health (Check and Watch) up to date.
    health_check_interval: float = Field(default=1.0, gt=0)
    # Origins (scheme://host[:port]) whose browser pages may call the API, comma-separated;
    # any other Origin header is refused (403 cross_site). The gateway's own origin is always
    # allowed, and in dev mode so is any loopback origin.
    http_allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # Seconds a client has to send a request's head (from connecting, or from its first byte).
    http_header_timeout: float = Field(default=10.0, gt=0)
    # Seconds a client has to send a request's whole body, once its head has arrived.
    http_body_timeout: float = Field(default=30.0, gt=0)
    # Seconds an idle keep-alive connection stays open between requests.
    http_idle_timeout: float = Field(default=5.0, gt=0)
    # Connections open at once; a request on any connection beyond it is answered 503.
    http_max_connections: int = Field(default=1000, gt=0)
    # Largest request head (request line and headers) in bytes; larger is answered 431.
    http_max_head_bytes: int = Field(default=16 * 1024, gt=0)
    # Largest query string in bytes (414), and most query parameters (400).
    http_max_query_bytes: int = Field(default=8 * 1024, gt=0)
    http_max_query_parameters: int = Field(default=64, gt=0)
    # Longest host lease granted, in seconds (a host asks for REVERB_HOST_LEASE_SECONDS):
    # how long at most a host that died without releasing its lease may still be chosen.
    host_lease_max_seconds: float = Field(default=300.0, ge=0.1)
    # Webhook sources by name: REVERB_WEBHOOKS__GH__PRESET=github serves POST /webhooks/gh
    # (README, "Webhooks").
    webhooks: dict[str, WebhookSource] = {}
    # Largest webhook request body (GitHub's own cap is 25 MiB); larger is answered 413.
    webhook_max_body_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    log_json: bool = True
    log_level: str = "info"
    # Where this service serves its Prometheus metrics (GET /metrics), "host:port";
    # unset: no metrics endpoint (`reverb dev` sets one per service).
    metrics_address: Annotated[str | None, AfterValidator(checked_address)] = None

    @model_validator(mode="after")
    def _tls_complete(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("REVERB_TLS_CERT and REVERB_TLS_KEY go together")
        if self.tls_ca is not None and self.tls_cert is None:
            raise ValueError("REVERB_TLS_CA (mutual TLS) needs REVERB_TLS_CERT and REVERB_TLS_KEY")
        return self

    @field_validator("webhooks")
    @classmethod
    def _lower_case_sources(cls, value: dict[str, WebhookSource]) -> dict[str, WebhookSource]:
        return source_names(value)

    @field_validator("gateway_required_apps", "http_allowed_origins", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value
