"""reverb.v1 messages as the HTTP API's JSON (documents orjson serialises).

Renderers are compiled once per message type. Field names are the HTTP names;
an enum is its lower-case name without the enum's prefix ("queued"); a
Timestamp is "YYYY-MM-DDTHH:MM:SS.ffffffZ" in UTC (RFC 3339: a 4-digit year);
an unset message or proto3 `optional` value is null; a oneof shows only the
member that is set; a bytes field marked `json` is embedded as the JSON it
holds (an empty object document is {}, an empty value null); an `inline`
message's fields join its parent's; a `detail` field is left out of a list's
items.
"""

from collections.abc import Callable
from datetime import UTC
from operator import attrgetter
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor, OneofDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from reverb_contracts.v1 import options_pb2
from reverb_ingress_gateway.wire.options import (
    enum_names,
    http_field,
    http_name,
    is_map,
    is_message,
    is_timestamp,
    message_of,
)

Document = dict[str, Any]
Renderer = Callable[[Message], Document]
# Puts one field (or a oneof, or an inline message's fields) into the document.
Put = Callable[[Message, Document], None]

_EMPTY_OBJECT = orjson.Fragment(b"{}")


def time_text(stamp: Timestamp) -> str:
    """RFC 3339 in UTC with microseconds; the year always has 4 digits (strftime's %Y does
    not pad years below 1000 on every platform)."""
    moment = stamp.ToDatetime(tzinfo=UTC)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S.%f}Z"


def _value(field: FieldDescriptor, renderers: dict[tuple[str, bool], Renderer]) -> Any:
    """How one item of `field` is rendered, from the Python value protobuf gives."""
    if is_timestamp(field):
        return time_text
    if is_message(field):
        return renderer(message_of(field), renderers, summary=field.is_repeated)
    if field.type == FieldDescriptor.TYPE_ENUM:
        names = enum_names(field)
        return lambda number: names.get(number, "unspecified")
    if field.type == FieldDescriptor.TYPE_BYTES:
        shape = http_field(field).json
        if shape == options_pb2.JSON_DOCUMENT_OBJECT:
            return lambda data: orjson.Fragment(data) if data else _EMPTY_OBJECT
        if shape == options_pb2.JSON_DOCUMENT_VALUE:
            return lambda data: orjson.Fragment(data) if data else None
        raise TypeError(f"{field.full_name}: bytes over HTTP must be marked json")
    return None  # a string, number or bool is itself


def _put(field: FieldDescriptor, renderers: dict[tuple[str, bool], Renderer], summary: bool) -> Put:
    key = http_name(field)
    get = attrgetter(field.name)
    name = field.name
    if is_map(field):
        raise TypeError(f"{field.full_name}: maps have no HTTP mapping yet")
    if http_field(field).inline:
        if field.is_repeated or not is_message(field):
            raise TypeError(f"{field.full_name}: only a singular message can be inline")
        inner = renderer(message_of(field), renderers, summary=summary)
        return lambda message, document: document.update(inner(get(message)))
    convert = _value(field, renderers)
    if field.is_repeated:
        if convert is None:
            return lambda message, document: document.__setitem__(key, list(get(message)))
        return lambda message, document: document.__setitem__(
            key, [convert(item) for item in get(message)]
        )
    if field.has_presence:
        if convert is None:
            convert = _same

        def present(message: Message, document: Document) -> None:
            document[key] = convert(get(message)) if message.HasField(name) else None

        return present
    if convert is None:
        return lambda message, document: document.__setitem__(key, get(message))
    return lambda message, document: document.__setitem__(key, convert(get(message)))


def _same(value: Any) -> Any:
    return value


def _oneof(
    oneof: OneofDescriptor, renderers: dict[tuple[str, bool], Renderer], summary: bool
) -> Put:
    """Only the member that is set (a declared oneof, not a proto3 `optional`)."""
    members = {field.name: _put(field, renderers, summary) for field in oneof.fields}
    group = oneof.name

    def put(message: Message, document: Document) -> None:
        member = message.WhichOneof(group)
        if member is not None:
            members[member](message, document)

    return put


def renderer(
    message: Descriptor, renderers: dict[tuple[str, bool], Renderer], *, summary: bool = False
) -> Renderer:
    """Renders a message of this type; `summary`: as a list's item, without `detail` fields."""
    cache_key = (message.full_name, summary)
    known = renderers.get(cache_key)
    if known is not None:
        return known

    def render_later(value: Message) -> Document:  # a recursive type
        return renderers[cache_key](value)

    renderers[cache_key] = render_later
    puts: list[Put] = []
    seen: set[str] = set()
    for field in message.fields:
        oneof = field.containing_oneof
        if summary and http_field(field).detail:
            continue
        if oneof is not None and not _synthetic(oneof):
            if oneof.name not in seen:
                seen.add(oneof.name)
                puts.append(_oneof(oneof, renderers, summary))
            continue
        puts.append(_put(field, renderers, summary))

    def render(value: Message) -> Document:
        document: Document = {}
        for put in puts:
            put(value, document)
        return document

    renderers[cache_key] = render
    return render


def _synthetic(oneof: OneofDescriptor) -> bool:
    """A proto3 `optional` field's own oneof ("_name"), not a declared one."""
    return len(oneof.fields) == 1 and oneof.name == f"_{oneof.fields[0].name}"
