"""The sink and reader the settings name (REVERB_LOG_SINK)."""

from datetime import timedelta

import asyncpg

from reverb_store.logs.postgres import PostgresLogs, PostgresSink
from reverb_store.logs.queries import LogReader
from reverb_store.logs.settings import LogSettings
from reverb_store.logs.writer import LogWriter, Sink


def sink_for(settings: LogSettings, pool: asyncpg.Pool) -> Sink | None:
    """The sink documents are written to; None for `none`."""
    if settings.log_sink == "postgres":
        return PostgresSink(pool)
    if settings.log_sink == "mongodb":
        from reverb_store.logs.mongodb import MongoSink

        return MongoSink(
            _mongo_url(settings), settings.mongodb_database, settings.mongodb_collection
        )
    return None


def reader_for(settings: LogSettings, pool: asyncpg.Pool) -> LogReader | None:
    """Where the logs API reads documents; None for `none` (the API answers empty pages)."""
    if settings.log_sink == "postgres":
        return PostgresLogs(pool)
    if settings.log_sink == "mongodb":
        from reverb_store.logs.mongodb import MongoLogs

        return MongoLogs(
            _mongo_url(settings), settings.mongodb_database, settings.mongodb_collection
        )
    return None


def writer_for(settings: LogSettings, pool: asyncpg.Pool) -> LogWriter:
    return LogWriter(
        sink_for(settings, pool),
        capacity=settings.log_buffer_size,
        retention=timedelta(days=settings.log_retention_days),
        step_documents=settings.log_step_documents,
    )


def _mongo_url(settings: LogSettings) -> str:
    if settings.mongodb_url is None:
        raise ValueError("REVERB_LOG_SINK=mongodb needs REVERB_MONGODB_URL")
    return settings.mongodb_url.get_secret_value()
