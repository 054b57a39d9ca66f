"""The function host's configuration, read from REVERB_* environment variables at the entry
point (`HostSettings()`) and passed down."""

from pathlib import Path
from typing import Annotated, Self

from pydantic import AfterValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reverb_telemetry.metrics import checked_address


class HostSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REVERB_", extra="ignore", frozen=True)

    # Where the FunctionHost gRPC server listens, "host:port" (port 0: any free port).
    host_address: str = "127.0.0.1:8290"
    # What the host registers as its address; None: the bound address (with the real port).
    host_advertise_address: str | None = None
    # Where the gateway's reverb.v1.Ingress service is reached.
    ingress_address: str = "127.0.0.1:8289"
    # Reach the gateway over TLS (its REVERB_TLS_CERT is set), verified with REVERB_TLS_CA
    # (the system's roots when unset), presenting REVERB_TLS_CERT/KEY if set.
    ingress_tls: bool = False
    # Sent as `authorization: Bearer <key>` when registering.
    api_key: SecretStr | None = None
    # The secret shared with queue workers: every Start must be signed with it (or with
    # the previous key) and every answer is signed with it. Required unless host_insecure.
    signing_key: SecretStr | None = None
    # The key before the current one, during a rotation: Starts signed with it are still
    # accepted. Unset once every worker signs with the new key.
    signing_key_previous: SecretStr | None = None
    # Serve without a signing key: any caller may run any function. Never in production.
    host_insecure: bool = False
    # PEM files: the server's certificate and key (TLS), and the CA whose certificates
    # clients must present (mutual TLS). All unset: plaintext gRPC.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    # How long the host's registration lasts unless renewed, in seconds (the gateway grants
    # at most its REVERB_HOST_LEASE_MAX_SECONDS); renewed at a third of it. A host that dies
    # without releasing its lease is no longer called once it ends.
    host_lease_seconds: float = Field(default=30.0, ge=0.1)
    # Longest pause between two registration attempts, in seconds.
    register_max_backoff: float = Field(default=5.0, gt=0)
    # Largest gRPC message the host sends or accepts (a Start carries the run's whole memo).
    max_message_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    # Seconds in-flight invocations get to finish when the host stops.
    shutdown_grace: float = Field(default=5.0, ge=0)
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
