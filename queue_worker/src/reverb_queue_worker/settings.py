"""The worker's configuration: built once at the entry point, from REVERB_* variables."""

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Self

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from reverb_store.logs.settings import LogSettings
from reverb_store.urls import DatabaseUrl
from reverb_telemetry.metrics import checked_address


def _seconds(value: object) -> object:
    """Environment values are strings: read "30" or "0.5" as seconds."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


# A duration given in seconds ("30", 0.5) or ISO 8601 ("PT1H") or as a timedelta.
Seconds = Annotated[timedelta, BeforeValidator(_seconds)]


class WorkerSettings(LogSettings):
    """Settings of a queue worker (environment variables prefixed `REVERB_`)."""

    model_config = SettingsConfigDict(env_prefix="REVERB_")

    database_url: DatabaseUrl
    # How many jobs (runs being driven, fan-outs) this worker handles at once.
    worker_concurrency: int = Field(default=100, ge=2)
    # pgqueuer re-picks a job whose heartbeat is older than this (a dead worker's job).
    worker_heartbeat_timeout: Seconds = Field(default=timedelta(seconds=30), gt=timedelta(0))
    # Workers are notified of jobs due at once, and run the wake-ups they schedule
    # themselves; they look for anything else this often (a dead worker's wake-ups and,
    # once past the heartbeat timeout, its jobs).
    worker_poll_interval: Seconds = Field(default=timedelta(seconds=5), gt=timedelta(0))
    # How often one worker of the deployment runs VACUUM (ANALYZE) on the queue's
    # short-lived tables, whose dead rows pgqueuer's dequeue would read (0: never, leaving
    # them to autovacuum; `reverb_store.jobs.upkeep`).
    worker_queue_vacuum_interval: Seconds = Field(default=timedelta(seconds=10), ge=timedelta(0))
    # Shared with the function hosts: every Start is signed with it, and every answer of a
    # host must be signed with it (docs/architecture.md, "Signed invocations").
    # (A worker needs no previous key during a rotation: a host answers each Start with
    # the key that signed it.)
    signing_key: SecretStr | None = None
    # PEM files for TLS to the hosts: the CA that signed the hosts' certificates (unset:
    # the system's roots), and this worker's client certificate and key (mutual TLS).
    # Any of them set: channels to hosts use TLS; none: plaintext.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    # How long one Invoke stream may last before the attempt counts as failed.
    invocation_timeout: Seconds = Field(default=timedelta(hours=1), gt=timedelta(0))
    # The first retry delay; later ones double (steps and functions up to 10 min, hosts 30 s).
    backoff_base: Seconds = Field(default=timedelta(seconds=1), ge=timedelta(0))
    # Connections for run transactions and step checkpoints (pgqueuer has its own).
    database_pool_size: int = Field(default=20, ge=2)
    # On stop, in-flight invocations get this long to end before they are abandoned.
    worker_shutdown_timeout: Seconds = Field(default=timedelta(seconds=30), ge=timedelta(0))
    log_json: bool = False
    log_level: str = "info"
    # Where this service serves its Prometheus metrics (GET /metrics), "host:port";
    # unset: no metrics endpoint (`reverb dev` sets one per service).
    metrics_address: Annotated[str | None, AfterValidator(checked_address)] = None

    @model_validator(mode="after")
    def _tls_complete(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("REVERB_TLS_CERT and REVERB_TLS_KEY go together")
        return self
