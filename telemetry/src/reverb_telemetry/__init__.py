"""structlog and OpenTelemetry set-up shared by Reverb's processes."""

from reverb_telemetry.logging import configure_logging
from reverb_telemetry.tracing import (
    configure_tracing,
    context_from_metadata,
    context_from_traceparent,
    current_traceparent,
    grpc_metadata,
    record_error,
    spans_exported,
)

__all__ = [
    "configure_logging",
    "configure_tracing",
    "context_from_metadata",
    "context_from_traceparent",
    "current_traceparent",
    "grpc_metadata",
    "record_error",
    "spans_exported",
]
