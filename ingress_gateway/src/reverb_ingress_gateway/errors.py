"""The gateway's errors: one tree, and one table of what each is over gRPC and HTTP.

    GatewayError                    code                    gRPC status        HTTP
     ├── InvalidArgument            invalid_argument        INVALID_ARGUMENT   400
     │    ├── InvalidJson           invalid_json            INVALID_ARGUMENT   400
     │    ├── InvalidEvent          invalid_event           INVALID_ARGUMENT   400
     │    ├── TooManyEvents         too_many_events         INVALID_ARGUMENT   400
     │    └── TooManyParameters     too_many_parameters     INVALID_ARGUMENT   400
     ├── CrossSite                  cross_site              (HTTP only)        403
     ├── ForeignHost                foreign_host            (HTTP only)        421
     ├── RequestTimeout             request_timeout         (HTTP only)        408
     ├── UriTooLong                 uri_too_long            (HTTP only)        414
     ├── HeadersTooLarge            headers_too_large       (HTTP only)        431
     ├── ClientGone                 client_gone             (HTTP only, never sent)
     ├── PayloadTooLarge            payload_too_large       INVALID_ARGUMENT   413
     ├── UnsupportedMediaType       unsupported_media_type  (HTTP only)        415
     ├── MethodNotAllowed           method_not_allowed      (HTTP only)        405
     ├── NotFound                   not_found               NOT_FOUND          404
     ├── AlreadyExists              already_exists          ALREADY_EXISTS     409
     ├── FailedPrecondition         failed_precondition     FAILED_PRECONDITION 409
     ├── Unauthenticated            unauthenticated         UNAUTHENTICATED    401
     ├── PermissionDenied           permission_denied       PERMISSION_DENIED  403
     ├── Unavailable                unavailable             UNAVAILABLE        503
     └── Internal                   internal                INTERNAL           500

The servicer raises these. The gRPC glue (`wire.rpc`) aborts a call with the
error's status and its code in the `reverb-error-code` trailing metadata; the
HTTP API catches the same error and renders `{"error": {"code", "message"}}`
with its HTTP status. Both read `STATUSES`.
"""

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg
import structlog

logger = structlog.get_logger("reverb.ingress_gateway")


class GatewayError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def status(self) -> "Status":
        return status_of(type(self))

    @property
    def code(self) -> str:
        return self.status.code


class InvalidArgument(GatewayError):
    pass


class InvalidJson(InvalidArgument):
    pass


class InvalidEvent(InvalidArgument):
    pass


class TooManyEvents(InvalidArgument):
    pass


class TooManyParameters(InvalidArgument):
    pass


class CrossSite(GatewayError):
    """A browser page of another site (a foreign Origin header)."""


class ForeignHost(GatewayError):
    """A Host name dev mode does not serve (not loopback): DNS rebinding."""


class RequestTimeout(GatewayError):
    """A client too slow to send its request's head or body."""


class UriTooLong(GatewayError):
    pass


class HeadersTooLarge(GatewayError):
    pass


class ClientGone(GatewayError):
    """The client went away (or was cut off) before its request was read."""


class PayloadTooLarge(GatewayError):
    pass


class UnsupportedMediaType(GatewayError):
    pass


class MethodNotAllowed(GatewayError):
    pass


class NotFound(GatewayError):
    pass


class AlreadyExists(GatewayError):
    pass


class FailedPrecondition(GatewayError):
    """The call is valid, but what it acts on is not in a state that allows it (a run
    that already ended cannot be cancelled; one still in flight cannot be replayed)."""


class Unauthenticated(GatewayError):
    pass


class PermissionDenied(GatewayError):
    """A live key without the scope a call needs (or a host key not bound to the app)."""


class Unavailable(GatewayError):
    pass


class Internal(GatewayError):
    pass


@dataclass(frozen=True, slots=True)
class Status:
    """What an error is on the wire: its code, its HTTP status, its gRPC status's name."""

    code: str
    http: int
    grpc: str


STATUSES: Mapping[type[GatewayError], Status] = {
    InvalidArgument: Status("invalid_argument", 400, "INVALID_ARGUMENT"),
    InvalidJson: Status("invalid_json", 400, "INVALID_ARGUMENT"),
    InvalidEvent: Status("invalid_event", 400, "INVALID_ARGUMENT"),
    TooManyEvents: Status("too_many_events", 400, "INVALID_ARGUMENT"),
    TooManyParameters: Status("too_many_parameters", 400, "INVALID_ARGUMENT"),
    CrossSite: Status("cross_site", 403, "PERMISSION_DENIED"),
    ForeignHost: Status("foreign_host", 421, "PERMISSION_DENIED"),
    RequestTimeout: Status("request_timeout", 408, "DEADLINE_EXCEEDED"),
    UriTooLong: Status("uri_too_long", 414, "INVALID_ARGUMENT"),
    HeadersTooLarge: Status("headers_too_large", 431, "INVALID_ARGUMENT"),
    ClientGone: Status("client_gone", 499, "CANCELLED"),
    PayloadTooLarge: Status("payload_too_large", 413, "INVALID_ARGUMENT"),
    UnsupportedMediaType: Status("unsupported_media_type", 415, "INVALID_ARGUMENT"),
    MethodNotAllowed: Status("method_not_allowed", 405, "UNIMPLEMENTED"),
    NotFound: Status("not_found", 404, "NOT_FOUND"),
    AlreadyExists: Status("already_exists", 409, "ALREADY_EXISTS"),
    FailedPrecondition: Status("failed_precondition", 409, "FAILED_PRECONDITION"),
    Unauthenticated: Status("unauthenticated", 401, "UNAUTHENTICATED"),
    PermissionDenied: Status("permission_denied", 403, "PERMISSION_DENIED"),
    Unavailable: Status("unavailable", 503, "UNAVAILABLE"),
    Internal: Status("internal", 500, "INTERNAL"),
}
_ROWS: dict[type, Status] = dict(STATUSES)
BY_CODE: Mapping[str, type[GatewayError]] = {
    status.code: error for error, status in STATUSES.items()
}


def status_of(error: type[GatewayError]) -> Status:
    """The table's row for `error`, or for the nearest class above it."""
    for kind in error.__mro__:
        status = _ROWS.get(kind)
        if status is not None:
            return status
    return _ROWS[Internal]


def as_gateway_error(error: Exception, where: str) -> GatewayError:
    """What to tell a caller about an error nobody planned for; logs it."""
    if isinstance(error, GatewayError):
        return error
    if is_database_unavailable(error):
        logger.warning("database unavailable", call=where, error=repr(error))
        return Unavailable("the database is unavailable; try again shortly")
    logger.exception("unexpected error", call=where)
    return Internal("internal error")


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
