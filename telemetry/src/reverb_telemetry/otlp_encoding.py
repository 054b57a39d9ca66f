"""Finished spans as an OTLP `ExportTraceServiceRequest`, written as protobuf bytes directly.

The OTLP exporters' own encoder (`opentelemetry.exporter.otlp.proto.common`) builds a
protobuf message object per span, attribute and value, and groups spans by resource with
`Resource.__hash__`, which dumps the resource's attributes to JSON, per span: on a host
that makes a span per step, that was most of a span's cost. This writes the same message
(a test parses both and compares them) field by field: a span is a few `bytes` joins.
Spans are grouped by the identity of their resource and scope objects (a tracer
provider's spans share one resource, a tracer's one scope); equal ones that are distinct
objects get separate groups, which OTLP allows.

Wire format: https://protobuf.dev/programming-guides/encoding/; the messages are
opentelemetry-proto's `trace/v1/trace.proto` and `common/v1/common.proto`.
"""

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

_FIXED64 = struct.Struct("<Q")
_DOUBLE = struct.Struct("<d")
_FIXED32 = struct.Struct("<I")
# Span.flags: the SDK's `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`, with
# `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK` when the parent is remote.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_FLAGS_FIELD = b"\x85\x01"  # field 16, fixed32
_EMPTY_STATUS = b"\x7a\x00"
_LOCAL_PARENT = _FLAGS_FIELD + _FIXED32.pack(_HAS_IS_REMOTE)
_REMOTE_PARENT = _FLAGS_FIELD + _FIXED32.pack(_HAS_IS_REMOTE | _IS_REMOTE)
# Span.kind: the API's value plus one (OTLP's 0 is UNSPECIFIED), with its tag.
_KINDS = {kind: b"\x30" + bytes((kind.value + 1,)) for kind in SpanKind}


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    size = len(payload)
    return tag + (bytes((size,)) if size < 0x80 else _varint(size)) + payload


def _text(tag: bytes, text: str) -> bytes:
    return _field(tag, text.encode("utf-8", "surrogatepass"))


def _any_value(value: Any) -> bytes:
    """An `AnyValue`'s fields (as the SDK's `_encode_value` chooses them)."""
    if isinstance(value, str):
        return _text(b"\x0a", value)
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if value is None:
        return b""
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(item)) for item in value))
    if isinstance(value, Mapping):
        return _field(
            b"\x32", b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items())
        )
    raise TypeError(f"an attribute of type {type(value).__name__} cannot be exported")


# Attribute keys, encoded: a process uses few of them, again and again (bounded all the
# same: a key could be made up per span).
_KEYS: dict[str, bytes] = {}
_MAX_KEYS = 1024


def _key_value(key: str, value: Any) -> bytes:
    return _key_value_of(key, _any_value(value))


def _key_value_of(key: str, any_value: bytes) -> bytes:
    """A `KeyValue`'s fields, its value's already encoded."""
    encoded = _KEYS.get(key)
    if encoded is None:
        encoded = _text(b"\x0a", key)
        if len(_KEYS) < _MAX_KEYS:
            _KEYS[key] = encoded
    return encoded + _field(b"\x12", any_value)


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    out = []
    for key, value in attributes.items():
        kind = type(value)
        if kind is str:  # most values: written here rather than by _any_value
            data = value.encode("utf-8", "surrogatepass")
            size = len(data)
            any_value = b"\x0a" + (bytes((size,)) if size < 0x80 else _varint(size)) + data
        elif kind is int:
            any_value = b"\x18" + _varint(value)
        else:
            any_value = _any_value(value)
        out.append(_field(tag, _key_value_of(key, any_value)))
    return b"".join(out)


def _count(tag: bytes, count: int) -> bytes:
    return tag + _varint(count) if count else b""


def _trace_state(tag: bytes, context: SpanContext) -> bytes:
    state = context.trace_state
    if not state:
        return b""
    return _text(tag, ",".join(f"{key}={value}" for key, value in state.items()))


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None
    parent = span.parent
    parts = [
        b"\x0a\x10"
        + context.trace_id.to_bytes(16, "big")
        + b"\x12\x08"
        + context.span_id.to_bytes(8, "big")
    ]
    if context.trace_state:
        parts.append(_trace_state(b"\x1a", context))
    if parent is not None:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    parts += (
        _text(b"\x2a", span.name),
        _KINDS[span.kind],
        b"\x39" + _FIXED64.pack(span.start_time or 0) + b"\x41" + _FIXED64.pack(span.end_time or 0),
        _attributes(b"\x4a", span.attributes),
        _count(b"\x50", span.dropped_attributes),
    )
    for event in span.events:
        parts.append(
            _field(
                b"\x5a",
                b"\x09"
                + _FIXED64.pack(event.timestamp)
                + _text(b"\x12", event.name)
                + _attributes(b"\x1a", event.attributes)
                + _count(b"\x20", event.dropped_attributes),
            )
        )
    parts.append(_count(b"\x60", span.dropped_events))
    # A link's trace state is not sent: the SDK's encoder leaves it out too.
    for link in span.links:
        linked = link.context
        parts.append(
            _field(
                b"\x6a",
                b"\x0a\x10"
                + linked.trace_id.to_bytes(16, "big")
                + b"\x12\x08"
                + linked.span_id.to_bytes(8, "big")
                + _attributes(b"\x22", link.attributes)
                + _count(b"\x28", link.dropped_attributes)
                + b"\x35"
                + _FIXED32.pack(_HAS_IS_REMOTE | (_IS_REMOTE if linked.is_remote else 0)),
            )
        )
    parts.append(_count(b"\x70", span.dropped_links))
    status = span.status
    if status.status_code is StatusCode.UNSET and not status.description:
        parts.append(_EMPTY_STATUS)
    else:
        code = status.status_code.value
        message = _text(b"\x12", status.description) if status.description else b""
        parts.append(_field(b"\x7a", message + (b"\x18" + _varint(code) if code else b"")))
    parts.append(_REMOTE_PARENT if parent is not None and parent.is_remote else _LOCAL_PARENT)
    return b"".join(parts)


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return _field(b"\x0a", b"")
    body = _text(b"\x0a", scope.name)
    if scope.version:
        body += _text(b"\x12", scope.version)
    return _field(b"\x0a", body + _attributes(b"\x1a", scope.attributes))


# A scope (by its object's identity) and its spans, encoded.
_Scoped = tuple[InstrumentationScope | None, list[bytes]]


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """The `ExportTraceServiceRequest` of `spans`, serialized."""
    resources: dict[int, tuple[Resource, dict[int, _Scoped]]] = {}
    for span in spans:
        resource = span.resource
        scope = span.instrumentation_scope or None
        group = resources.get(id(resource))
        if group is None:
            group = resources[id(resource)] = (resource, {})
        scopes = group[1]
        found = scopes.get(id(scope))
        if found is None:
            found = scopes[id(scope)] = (scope, [])
        found[1].append(_field(b"\x12", _span(span)))
    out: list[bytes] = []
    for resource, scopes in resources.values():
        body = [_field(b"\x0a", _attributes(b"\x0a", resource.attributes))]
        for scope, encoded in scopes.values():
            schema = scope.schema_url if scope is not None else ""
            body.append(
                _field(
                    b"\x12",
                    _scope(scope) + b"".join(encoded) + (_text(b"\x1a", schema) if schema else b""),
                )
            )
        if resource.schema_url:
            body.append(_text(b"\x1a", resource.schema_url))
        out.append(_field(b"\x0a", b"".join(body)))
    return b"".join(out)
