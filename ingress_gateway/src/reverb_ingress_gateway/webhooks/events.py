"""What a verified webhook request becomes: the headers kept, and the event's name and data.

The event's data is `{"source", "headers", "webhook", "delivery_id"}`: `webhook` is the
body as JSON when it is JSON that PostgreSQL stores as it is (the body's own bytes, spliced
in without re-encoding: numbers keep every digit), or else the body as text.
"""

import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from reverb_ingress_gateway import json_limits
from reverb_ingress_gateway.webhooks.presets import SECRET_HEADERS

# Headers about the connection or the transfer, not about the delivery.
_TRANSPORT = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "expect",
        "accept-encoding",
    }
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
UNKNOWN_TYPE = "unknown"


def kept_headers(headers: Iterable[tuple[str, str]], removed: frozenset[str]) -> dict[str, str]:
    """The provider's headers, lower-cased, without signatures, credentials and transport."""
    return {
        name: value
        for name, value in ((name.lower(), value) for name, value in headers)
        if name not in SECRET_HEADERS and name not in removed and name not in _TRANSPORT
    }


def parse(body: bytes) -> Any | None:
    """The body as JSON if it is JSON PostgreSQL can store as it is, else None."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if b"\\u0000" in body or json_limits.too_deep(body):
        return None  # jsonb holds no NUL, and deep nesting is refused everywhere
    return document


def event_name(template: str, event_type: str | None) -> str:
    """The source's EVENT with `{type}` replaced by the provider's type (control characters
    removed, at most 128 characters), or by "unknown" when the request names none."""
    if "{type}" not in template:
        return template
    shown = _CONTROL.sub("", event_type or "")[:128] or UNKNOWN_TYPE
    return template.replace("{type}", shown)[:256]


def event_data(
    source: str,
    headers: Mapping[str, str],
    body: bytes,
    delivery_id: str | None,
    is_json: bool,
) -> str:
    """The event's data as JSON text: the body as JSON (when `is_json`) or as text."""
    head = orjson.dumps({"source": source, "headers": headers, "delivery_id": delivery_id})
    if is_json:
        webhook = body
    else:
        text = body.decode("utf-8", "replace").replace("\x00", "\ufffd")
        webhook = orjson.dumps(text)
    return (head[:-1] + b',"webhook":' + webhook + b"}").decode()
