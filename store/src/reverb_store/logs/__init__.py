"""Log documents, the writer that batches them to a sink, and the sinks' reads.

`LogWriter.record` is what the engine calls at each notable moment (never waits, never
fails a run); `PostgresSink`/`MongoSink` store batches; `PostgresLogs`/`MongoLogs` answer
the logs API's `LogQuery`.
"""

from reverb_store.logs.documents import (
    DEAD_LETTERS,
    EVENT_DEAD_LETTERED,
    EVENT_RECEIVED,
    EVENT_SENT,
    HOST_UNREACHABLE,
    LEVELS,
    RETRY_SCHEDULED,
    RUN_CANCELLED,
    RUN_COMPLETED,
    RUN_DEAD_LETTERED,
    RUN_FAILED,
    RUN_STARTED,
    SLEEP_STARTED,
    STEP_COMPLETED,
    STEP_FAILED,
    USER,
    WAIT_RESOLVED,
    Level,
    LogDocument,
    new_log_id,
    read_id,
    show_id,
    trace_ids,
)
from reverb_store.logs.postgres import PostgresLogs, PostgresSink
from reverb_store.logs.queries import LogQuery, LogReader, Position
from reverb_store.logs.views import LogViews
from reverb_store.logs.writer import LogWriter, Sink

__all__ = [
    "DEAD_LETTERS",
    "EVENT_DEAD_LETTERED",
    "EVENT_RECEIVED",
    "EVENT_SENT",
    "HOST_UNREACHABLE",
    "LEVELS",
    "RETRY_SCHEDULED",
    "RUN_CANCELLED",
    "RUN_COMPLETED",
    "RUN_DEAD_LETTERED",
    "RUN_FAILED",
    "RUN_STARTED",
    "SLEEP_STARTED",
    "STEP_COMPLETED",
    "STEP_FAILED",
    "USER",
    "WAIT_RESOLVED",
    "Level",
    "LogDocument",
    "LogQuery",
    "LogReader",
    "LogViews",
    "LogWriter",
    "PostgresLogs",
    "PostgresSink",
    "Position",
    "Sink",
    "new_log_id",
    "read_id",
    "show_id",
    "trace_ids",
]
