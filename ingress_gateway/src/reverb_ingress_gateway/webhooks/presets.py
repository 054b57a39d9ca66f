"""How each preset verifies a request, byte for byte on the raw body, before anything parses
it; and what it knows of the request (its delivery id, its event type).

Every comparison of a signature is constant-time (`hmac.compare_digest`). A request that
fails is `Unauthenticated` with a message naming what is wrong (never the expected value).
"""

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import standardwebhooks

from reverb_ingress_gateway.errors import Unauthenticated
from reverb_ingress_gateway.webhooks.sources import PresetName, WebhookSource

Headers = Mapping[str, str]  # lower-cased names
Clock = Callable[[], float]  # Unix seconds


class Preset(Protocol):
    @property
    def signature_headers(self) -> frozenset[str]:
        """The headers that carry the signature: never stored, nor put in the event."""

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        """Raise Unauthenticated unless the request is signed with the source's secret."""

    def delivery_id(self, headers: Headers, document: Any) -> str | None:
        """The provider's id of this delivery (the same when it sends it again), or None."""

    def event_type(self, headers: Headers, document: Any) -> str | None:
        """The provider's event type, or None. `document` is the parsed body (or None)."""


def _hex_hmac(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode("utf-8", "replace"))


def _required(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if not value:
        raise Unauthenticated(f"the {name} header is missing")
    return value


def _timestamp(value: str, now: float, tolerance: float, name: str) -> int:
    try:
        seconds = int(value.strip())
    except ValueError:
        raise Unauthenticated(f"{name} is not a Unix time in seconds") from None
    if abs(now - seconds) > tolerance:
        raise Unauthenticated(f"{name} is more than {tolerance:g} s from now: a stale request")
    return seconds


def _field(document: Any, *path: str) -> str | None:
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document if isinstance(document, str) and document else None


@dataclass(frozen=True, slots=True)
class GitHub:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`."""

    secret: bytes
    signature_headers: frozenset[str] = frozenset({"x-hub-signature-256", "x-hub-signature"})

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        signature = _required(headers, "x-hub-signature-256")
        scheme, _, digest = signature.partition("=")
        if scheme.strip().lower() != "sha256" or not _same(_hex_hmac(self.secret, body), digest):
            raise Unauthenticated("the X-Hub-Signature-256 signature does not match the body")

    def delivery_id(self, headers: Headers, document: Any) -> str | None:
        return headers.get("x-github-delivery") or None

    def event_type(self, headers: Headers, document: Any) -> str | None:
        return headers.get("x-github-event") or None


@dataclass(frozen=True, slots=True)
class Stripe:
    """`Stripe-Signature: t=<time>,v1=<hex HMAC of "t.body">[,v1=…]`, within the tolerance."""

    secret: bytes
    tolerance: float
    signature_headers: frozenset[str] = frozenset({"stripe-signature"})

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        parts = [part.partition("=") for part in _required(headers, "stripe-signature").split(",")]
        times = [value for key, _, value in parts if key.strip() == "t"]
        signatures = [value for key, _, value in parts if key.strip() == "v1"]
        if len(times) != 1 or not signatures:
            raise Unauthenticated("Stripe-Signature needs one t= and at least one v1=")
        seconds = _timestamp(times[0], now, self.tolerance, "Stripe-Signature's t")
        expected = _hex_hmac(self.secret, str(seconds).encode() + b"." + body)
        # Every candidate is compared (no early exit), each in constant time.
        if not [given for given in signatures if _same(expected, given)]:
            raise Unauthenticated("no v1 signature of Stripe-Signature matches the body")

    def delivery_id(self, headers: Headers, document: Any) -> str | None:
        return _field(document, "id")  # the event's id: the same on every redelivery

    def event_type(self, headers: Headers, document: Any) -> str | None:
        return _field(document, "type")


@dataclass(frozen=True, slots=True)
class Slack:
    """`X-Slack-Signature: v0=<hex HMAC of "v0:<timestamp>:body">` and
    `X-Slack-Request-Timestamp` within the tolerance."""

    secret: bytes
    tolerance: float
    signature_headers: frozenset[str] = frozenset({"x-slack-signature"})

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        stamp = _required(headers, "x-slack-request-timestamp")
        signature = _required(headers, "x-slack-signature")
        seconds = _timestamp(stamp, now, self.tolerance, "X-Slack-Request-Timestamp")
        expected = "v0=" + _hex_hmac(self.secret, b"v0:" + str(seconds).encode() + b":" + body)
        if not _same(expected, signature):
            raise Unauthenticated("the X-Slack-Signature signature does not match the body")

    def delivery_id(self, headers: Headers, document: Any) -> str | None:
        return _field(document, "event_id")  # Events API retries carry the same event_id

    def event_type(self, headers: Headers, document: Any) -> str | None:
        return _field(document, "event", "type") or _field(document, "type")


@dataclass(frozen=True, slots=True)
class Standard:
    """Standard Webhooks (Svix): `webhook-id`, `webhook-timestamp`, `webhook-signature`,
    verified by the `standardwebhooks` library (its own 5-minute tolerance)."""

    verifier: standardwebhooks.Webhook
    signature_headers: frozenset[str] = frozenset({"webhook-signature"})

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            _required(headers, name)
        try:
            self.verifier.verify(body, dict(headers), json_parse=False)
        except Exception as error:  # the library raises several kinds on malformed headers
            known = isinstance(error, standardwebhooks.WebhookVerificationError)
            reason = str(error) if known else ""
            raise Unauthenticated(
                f"the webhook-signature does not verify{': ' + reason if reason else ''}"
            ) from None

    def delivery_id(self, headers: Headers, document: Any) -> str | None:
        return headers.get("webhook-id") or None

    def event_type(self, headers: Headers, document: Any) -> str | None:
        return _field(document, "type")


@dataclass(frozen=True, slots=True)
class HmacSha256:
    """The hex HMAC-SHA256 of the body in a header the source names (`sha256=` allowed)."""

    secret: bytes
    header: str
    delivery_header: str | None = None

    @property
    def signature_headers(self) -> frozenset[str]:
        return frozenset({self.header})

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        signature = _required(headers, self.header)
        if signature[:7].lower() == "sha256=":
            signature = signature[7:]
        if not _same(_hex_hmac(self.secret, body), signature):
            raise Unauthenticated(f"the {self.header} signature does not match the body")

    def delivery_id(self, headers: Headers, document: Any) -> str | None:
        return headers.get(self.delivery_header) or None if self.delivery_header else None

    def event_type(self, headers: Headers, document: Any) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class Open:
    """No verification: an explicit choice (`PRESET=open`)."""

    delivery_header: str | None = None
    signature_headers: frozenset[str] = frozenset()

    def verify(self, headers: Headers, body: bytes, now: float) -> None:
        return None

    def delivery_id(self, headers: Headers, document: Any) -> str | None:
        return headers.get(self.delivery_header) or None if self.delivery_header else None

    def event_type(self, headers: Headers, document: Any) -> str | None:
        return None


# Every preset's signature headers, removed whatever the source's preset (a request may
# carry several), with the credentials a caller may send.
SECRET_HEADERS = frozenset(
    {
        "x-hub-signature-256",
        "x-hub-signature",
        "stripe-signature",
        "x-slack-signature",
        "webhook-signature",
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-api-key",
    }
)


def preset(source: WebhookSource) -> Preset:
    name: PresetName = source.preset
    secret = source.secret.get_secret_value() if source.secret is not None else ""
    if name == "github":
        return GitHub(secret.encode())
    if name == "stripe":
        return Stripe(secret.encode(), source.tolerance)
    if name == "slack":
        return Slack(secret.encode(), source.tolerance)
    if name == "standard":
        return Standard(standardwebhooks.Webhook(secret))
    if name == "hmac-sha256":
        assert source.header is not None
        return HmacSha256(secret.encode(), source.header, source.delivery_header)
    return Open(source.delivery_header)


def wall_clock() -> float:
    return time.time()
