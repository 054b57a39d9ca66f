"""The gateway's errors: one tree, each with a code that travels over gRPC and HTTP alike.

    GatewayError                    code               gRPC status        HTTP
     ├── InvalidArgument            invalid_argument   INVALID_ARGUMENT   400
     │    ├── InvalidJson           invalid_json       INVALID_ARGUMENT   400
     │    ├── InvalidEvent          invalid_event      INVALID_ARGUMENT   400
     │    └── TooManyEvents         too_many_events    INVALID_ARGUMENT   400
     ├── PayloadTooLarge            payload_too_large  INVALID_ARGUMENT   413
     ├── UnsupportedMediaType       unsupported_media_type  (HTTP only)   415
     ├── MethodNotAllowed           method_not_allowed      (HTTP only)   405
     ├── NotFound                   not_found          NOT_FOUND          404
     ├── AlreadyExists              already_exists     ALREADY_EXISTS     409
     ├── Unauthenticated            unauthenticated    UNAUTHENTICATED    401
     ├── Unavailable                unavailable        UNAVAILABLE        503
     └── Internal                   internal           INTERNAL           500

The servicer raises these; gRPC callers get the status with the code in the
`reverb-error-code` trailing metadata, and the HTTP API renders
`{"error": {"code", "message"}}` with the HTTP status.
"""

import asyncio
from typing import ClassVar

import asyncpg
import grpc

ERROR_CODE_METADATA = "reverb-error-code"


class GatewayError(Exception):
    code: ClassVar[str] = "internal"
    grpc_status: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(GatewayError):
    code = "invalid_argument"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class InvalidJson(InvalidArgument):
    code = "invalid_json"


class InvalidEvent(InvalidArgument):
    code = "invalid_event"


class TooManyEvents(InvalidArgument):
    code = "too_many_events"


class PayloadTooLarge(GatewayError):
    code = "payload_too_large"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 413


class UnsupportedMediaType(GatewayError):
    code = "unsupported_media_type"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 415


class MethodNotAllowed(GatewayError):
    code = "method_not_allowed"
    grpc_status = grpc.StatusCode.UNIMPLEMENTED
    http_status = 405


class NotFound(GatewayError):
    code = "not_found"
    grpc_status = grpc.StatusCode.NOT_FOUND
    http_status = 404


class AlreadyExists(GatewayError):
    code = "already_exists"
    grpc_status = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409


class Unauthenticated(GatewayError):
    code = "unauthenticated"
    grpc_status = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class Unavailable(GatewayError):
    code = "unavailable"
    grpc_status = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class Internal(GatewayError):
    pass


_BY_CODE: dict[str, type[GatewayError]] = {
    error.code: error
    for error in (
        InvalidArgument,
        InvalidJson,
        InvalidEvent,
        TooManyEvents,
        PayloadTooLarge,
        NotFound,
        AlreadyExists,
        Unauthenticated,
        Unavailable,
        Internal,
    )
}

_BY_STATUS: dict[grpc.StatusCode, type[GatewayError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}


def error_from_status(status: grpc.StatusCode, message: str, code: str | None) -> GatewayError:
    """Rebuild the error a servicer call ended with, from its status and error code."""
    error = _BY_CODE.get(code or "") or _BY_STATUS.get(status, Internal)
    return error(message)


_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # connection refused or reset; includes TimeoutError (connect, pool acquire)
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    # A connection the server closed while it sat in the pool (e.g. terminated by an
    # administrator) can fail its next query with "cannot switch to state ...".
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.OperatorInterventionError,  # 57: admin/crash shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.exceptions.InvalidCatalogNameError,  # 3D000: the database does not exist (yet)
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # 28: credentials refused
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # 25006: a standby after a failover
)


def is_database_unavailable(error: BaseException) -> bool:
    """Whether `error` means PostgreSQL cannot be reached or cannot serve now."""
    if isinstance(error, _UNAVAILABLE_ERRORS):
        return True
    if isinstance(error, asyncpg.exceptions.InterfaceError):
        text = str(error)
        return "pool is closing" in text or "pool is closed" in text or "is closed" in text
    return False
