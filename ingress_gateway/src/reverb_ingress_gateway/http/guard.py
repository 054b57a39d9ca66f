"""The checks every HTTP request passes before routing: who may call (Host, Origin), what a
body must be (JSON), and how big a query string may be.

    - Dev mode serves only loopback Host names (localhost, 127.0.0.1, [::1], any port): a page
      that rebinds its own DNS name to 127.0.0.1 sends its own name as Host (421 foreign_host).
    - A request with an Origin header is refused (403 cross_site) unless the origin is the
      gateway's own (the same host and port as the Host header), listed in
      REVERB_HTTP_ALLOWED_ORIGINS, or, in dev mode, a loopback origin.
    - A request with a body must say `Content-Type: application/json` (415): the body types a
      browser sends cross-site without asking first (text/plain, forms) are not JSON. The
      webhook routes (`Policy.raw_body`) take any body: a signature or an API key
      authenticates them, not the media type.
    - A query string is at most REVERB_HTTP_MAX_QUERY_BYTES long (414) and holds at most
      REVERB_HTTP_MAX_QUERY_PARAMETERS parameters (400), checked before anything parses it.
"""

import ipaddress
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from reverb_ingress_gateway.errors import (
    CrossSite,
    ForeignHost,
    GatewayError,
    TooManyParameters,
    UnsupportedMediaType,
    UriTooLong,
)
from reverb_ingress_gateway.http.responses import error_response


@dataclass(frozen=True, slots=True)
class Policy:
    dev: bool
    # Origins as browsers send them, lower case: "https://app.example.com".
    allowed_origins: Collection[str]
    max_query_bytes: int
    max_query_parameters: int
    # Whether a request (method, path) may carry a body of any media type.
    raw_body: Callable[[str, str], bool] = lambda method, path: False


# The names nearly every local request uses, checked without parsing an address.
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback_name(host: str) -> bool:
    """Whether a host name (no port; an IPv6 address without brackets) is this machine."""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(authority: str) -> str:
    """The name in a Host header's "name:port", "[v6]:port" or "name"."""
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority
    return authority.partition(":")[0]


def _is_json(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


class RequestGuard:
    """ASGI middleware: answers a request that fails a check with its JSON error."""

    def __init__(self, app: ASGIApp, policy: Policy) -> None:
        self._app = app
        self._policy = policy
        self._origins = frozenset(origin.lower().rstrip("/") for origin in policy.allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            error = self._check(scope)
            if error is not None:
                await error_response(error, {"connection": "close"})(scope, receive, send)
                return
        await self._app(scope, receive, send)

    def _check(self, scope: Scope) -> GatewayError | None:
        host = origin = content_type = None
        has_body = False
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1").lower()
            elif name == b"origin":
                origin = value.decode("latin-1").lower()
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                has_body = has_body or value.strip() not in (b"0", b"")
            elif name == b"transfer-encoding":
                has_body = True
        policy = self._policy
        if policy.dev and (host is None or not is_loopback_name(_host_name(host))):
            return ForeignHost(
                f"dev mode serves only localhost, 127.0.0.1 and [::1], not Host {host!r}"
            )
        if origin is not None and not self._allows(origin, host):
            return CrossSite(
                f"requests from the web page {origin!r} are refused; list the origin in"
                " REVERB_HTTP_ALLOWED_ORIGINS to allow it"
            )
        query_error = self._check_query(scope.get("query_string", b""))
        if query_error is not None:
            return query_error
        if (
            has_body
            and (content_type is None or not _is_json(content_type))
            and not policy.raw_body(scope["method"], scope["path"])
        ):
            return UnsupportedMediaType(
                "a request body must be sent with `Content-Type: application/json`"
            )
        return None

    def _check_query(self, query: bytes) -> GatewayError | None:
        policy = self._policy
        if len(query) > policy.max_query_bytes:
            return UriTooLong(
                f"the query string is {len(query)} bytes; the limit is {policy.max_query_bytes}"
            )
        if query.count(b"&") >= policy.max_query_parameters:
            return TooManyParameters(
                f"the query string has more than {policy.max_query_parameters} parameters"
            )
        return None

    def _allows(self, origin: str, host: str | None) -> bool:
        if origin in self._origins:
            return True
        try:
            parts = urlsplit(origin)
            hostname = parts.hostname
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not hostname:
            return False  # "null" (sandboxed pages, files) and the like
        if host is not None and parts.netloc == host:
            return True  # the gateway's own origin
        return self._policy.dev and is_loopback_name(hostname)
