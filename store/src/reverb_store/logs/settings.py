"""The log sink's settings, shared by the services that write (worker) and read (gateway)
log documents: each service's settings class derives from `LogSettings`."""

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings

SinkName = Literal["postgres", "mongodb", "none"]


class LogSettings(BaseSettings):
    """REVERB_LOG_SINK and friends (README "Logs")."""

    # Where log documents go: reverb.logs in the engine's PostgreSQL, MongoDB, or nowhere.
    log_sink: SinkName = "postgres"
    # Documents older than this are deleted (in batches, hourly).
    log_retention_days: float = Field(default=30, gt=0)
    # Write a document per completed step.run (off: they are read from reverb.steps when
    # a run's logs are listed, which keeps the step path as it was; README "Logs").
    log_step_documents: bool = False
    # Documents waiting in memory while the sink is slow or down; more are dropped, counted.
    log_buffer_size: int = Field(default=100_000, ge=1)
    # The MongoDB sink: a mongodb:// URL (DocumentDB's too), its database and collection.
    mongodb_url: SecretStr | None = None
    mongodb_database: str = Field(default="reverb", min_length=1)
    mongodb_collection: str = Field(default="logs", min_length=1)

    @model_validator(mode="after")
    def _mongodb_complete(self) -> Self:
        if self.log_sink == "mongodb" and self.mongodb_url is None:
            raise ValueError("REVERB_LOG_SINK=mongodb needs REVERB_MONGODB_URL")
        return self
