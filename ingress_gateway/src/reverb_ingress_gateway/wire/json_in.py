"""JSON bodies onto reverb.v1 messages (query strings and paths: `parameters`).

Converters are compiled once per message type (closures over its descriptor);
a request then costs a dict lookup, a type check and a set per field. Over
HTTP a Timestamp is an ISO-8601 string (UTC when it names no offset) or Unix
milliseconds, an enum is its lower-case name without the enum's prefix, a
bytes field marked `json` is the JSON document itself. A missing or null value
leaves the field unset, unless google.api.field_behavior marks it REQUIRED.
Unknown keys are ignored.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from reverb_contracts.v1 import options_pb2
from reverb_ingress_gateway import json_limits
from reverb_ingress_gateway.wire.options import (
    enum_names,
    http_field,
    http_name,
    is_map,
    is_message,
    is_timestamp,
    message_of,
    required,
)

MAX_TIMESTAMP_MILLISECONDS = 253402300799999  # 9999-12-31T23:59:59.999Z

Setter = Callable[[Message, Any], None]


class Misfit(Exception):
    """A JSON value that does not fit its field: where it is (keys and [index]es), and why."""

    def __init__(self, path: list[str], problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem

    def within(self, *parts: str) -> "Misfit":
        self.path[:0] = parts
        return self

    def describe(self) -> str:
        where = "".join(part if part.startswith("[") else f".{part}" for part in self.path)
        return f"{where.removeprefix('.')} {self.problem}"


# Bodies -------------------------------------------------------------------------------------


def _timestamp(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise Misfit([], "must be an ISO-8601 time or Unix milliseconds") from None
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        try:  # an offset can carry a time past year 1 or 9999 in UTC
            return parsed.astimezone(UTC)
        except OverflowError:
            raise Misfit([], "is out of range (years 1 to 9999 in UTC)") from None
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= MAX_TIMESTAMP_MILLISECONDS:
            raise Misfit([], "is out of range")
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    raise Misfit([], "must be an ISO-8601 time or Unix milliseconds")


def _string_value(value: Any) -> str:
    if not isinstance(value, str):
        raise Misfit([], "must be a string")
    return value


def _string(field: FieldDescriptor) -> Callable[[Any], Any]:
    if http_field(field).non_empty:

        def non_empty(value: Any) -> str:
            if not isinstance(value, str) or not value:
                raise Misfit([], "must be a non-empty string")
            return value

        return non_empty

    return _string_value


def _document(value: Any) -> bytes:
    """The JSON text of a parsed value. orjson serialises at most 254 levels (the parser
    reads 1,024); anything that deep is past `json_limits.MAX_DEPTH` anyway."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        raise Misfit([], json_limits.depth_problem()) from None


def _json(field: FieldDescriptor) -> Callable[[Any], Any]:
    shape = http_field(field).json
    if shape == options_pb2.JSON_DOCUMENT_OBJECT:

        def json_object(value: Any) -> bytes:
            if not isinstance(value, dict):
                raise Misfit([], "must be an object")
            return _document(value)

        return json_object
    if shape == options_pb2.JSON_DOCUMENT_VALUE:
        return _document
    raise TypeError(f"{field.full_name}: bytes over HTTP must be marked json")


def _boolean(field: FieldDescriptor) -> Callable[[Any], Any]:
    def boolean(value: Any) -> bool:
        if not isinstance(value, bool):
            raise Misfit([], "must be true or false")
        return value

    return boolean


def _enum(field: FieldDescriptor) -> Callable[[Any], Any]:
    numbers = {name: number for number, name in enum_names(field).items()}

    def enum(value: Any) -> int:
        if not isinstance(value, str) or value.lower() not in numbers:
            raise Misfit([], f"must be one of: {', '.join(numbers)}")
        return numbers[value.lower()]

    return enum


def _integer(field: FieldDescriptor) -> Callable[[Any], Any]:
    return integer_check(field)[0]


INTEGERS = {
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_INT64,
    FieldDescriptor.CPPTYPE_UINT32,
    FieldDescriptor.CPPTYPE_UINT64,
}
_CONVERTERS: dict[int, Callable[[FieldDescriptor], Callable[[Any], Any]]] = {
    FieldDescriptor.TYPE_STRING: _string,
    FieldDescriptor.TYPE_BYTES: _json,
    FieldDescriptor.TYPE_BOOL: _boolean,
    FieldDescriptor.TYPE_ENUM: _enum,
}


def _converter(field: FieldDescriptor) -> Callable[[Any], Any]:
    """A JSON value to the Python value of one (scalar) item of `field`."""
    if field.cpp_type in INTEGERS:
        return _integer(field)
    make = _CONVERTERS.get(field.type)
    if make is None:
        raise TypeError(f"{field.full_name}: this field type has no HTTP mapping")
    return make(field)


def integer_check(field: FieldDescriptor) -> tuple[Callable[[Any], int], str]:
    """The check of an integer in its range, and what it says when one is not."""
    options = http_field(field)
    low = options.minimum if options.HasField("minimum") else None
    high = options.maximum if options.HasField("maximum") else None
    problem = "must be an integer" + (f" from {low} to {high}" if low is not None else "")

    def integer(value: Any) -> int:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            raise Misfit([], problem)
        return value

    return integer, problem


def _setter(field: FieldDescriptor, readers: dict[str, "Reader"]) -> Setter:
    """Sets a message, Timestamp or repeated `field` of a message from its (non-null) JSON."""
    if field.is_repeated:
        return _repeated(field, readers)
    name = field.name
    key = http_name(field)
    if is_timestamp(field):

        def timestamp(message: Message, value: Any) -> None:
            try:
                getattr(message, name).FromDatetime(_timestamp(value))
            except Misfit as misfit:
                raise misfit.within(key) from None

        return timestamp
    read = reader(message_of(field), readers)

    def submessage(message: Message, value: Any) -> None:
        try:
            if not isinstance(value, dict):
                raise Misfit([], "must be an object")
            read.fill(getattr(message, name), value)
        except Misfit as misfit:
            raise misfit.within(key) from None

    return submessage


def _repeated(field: FieldDescriptor, readers: dict[str, "Reader"]) -> Setter:
    name = field.name
    key = http_name(field)
    if is_timestamp(field):
        raise TypeError(f"{field.full_name}: lists of times are not read from JSON")
    if is_message(field):
        read = reader(message_of(field), readers)

        def messages(message: Message, value: Any) -> None:
            if not isinstance(value, list):
                raise Misfit([key], "must be a list")
            container = getattr(message, name)
            for index, item in enumerate(value):
                read_item(read, container, item, key, index)

        return messages
    convert = _converter(field)

    def scalars(message: Message, value: Any) -> None:
        if not isinstance(value, list):
            raise Misfit([key], "must be a list")
        container = getattr(message, name)
        for index, item in enumerate(value):
            try:
                container.append(convert(item))
            except Misfit as misfit:
                raise misfit.within(key, f"[{index}]") from None

    return scalars


def read_item(read: "Reader", container: Any, item: Any, key: str, index: int) -> Message:
    """Adds the JSON object `item` to a repeated message field (`key`'s `index`th item)."""
    try:
        if not isinstance(item, dict):
            raise Misfit([], "must be an object")
        return read.add(container, item)
    except Misfit as misfit:
        raise misfit.within(*((key,) if key else ()), f"[{index}]") from None


class Reader:
    """Reads JSON objects into messages of one type. Scalars are checked and converted in one
    pass (and given to `add` at once, cheaper than setting them one by one); Timestamps,
    messages and lists are set after."""

    __slots__ = ("_scalars", "_others")

    def __init__(self) -> None:
        # (key, field name, required, convert; None: a plain string)
        self._scalars: list[tuple[str, str, bool, Callable[[Any], Any] | None]] = []
        self._others: list[tuple[str, bool, Setter]] = []

    def compile(
        self, message: Descriptor, readers: dict[str, "Reader"], skip: frozenset[str]
    ) -> None:
        for field in message.fields:
            if field.name in skip:
                continue
            if is_map(field) or http_field(field).inline:
                raise TypeError(f"{field.full_name}: maps and inline fields are not read from JSON")
            key = http_name(field)
            if is_message(field) or field.is_repeated:
                self._others.append((key, required(field), _setter(field, readers)))
                continue
            convert = _converter(field)
            plain = field.type == FieldDescriptor.TYPE_STRING and convert is _string_value
            self._scalars.append((key, field.name, required(field), None if plain else convert))

    def _values(self, document: dict[str, Any]) -> dict[str, Any]:
        values = {}
        get = document.get
        for key, name, needed, convert in self._scalars:
            value = get(key)
            if value is None:
                if needed:
                    raise Misfit([key], "is required")
                continue
            if convert is None:
                if not isinstance(value, str):
                    raise Misfit([key], "must be a string")
                values[name] = value
                continue
            try:
                values[name] = convert(value)
            except Misfit as misfit:
                raise misfit.within(key) from None
        return values

    def _rest(self, target: Message, document: dict[str, Any]) -> None:
        get = document.get
        for key, needed, put in self._others:
            value = get(key)
            if value is None:
                if needed:
                    raise Misfit([key], "is required")
                continue
            put(target, value)

    def fill(self, target: Message, document: dict[str, Any]) -> None:
        """Sets the fields `document` gives on `target`."""
        for name, value in self._values(document).items():
            setattr(target, name, value)
        if self._others:
            self._rest(target, document)

    def add(self, container: Any, document: dict[str, Any]) -> Message:
        """Adds a message made from `document` to a repeated field's `container`."""
        item: Message = container.add(**self._values(document))
        if self._others:
            self._rest(item, document)
        return item


def reader(
    message: Descriptor, readers: dict[str, Reader], *, skip: frozenset[str] = frozenset()
) -> Reader:
    """The reader of this message type (compiled once per type); the fields named in `skip`
    (those a route's path binds) are not read."""
    cache_key = message.full_name + "".join(f" -{name}" for name in sorted(skip))
    known = readers.get(cache_key)
    if known is None:
        known = readers[cache_key] = Reader()  # before compiling: a type may contain itself
        known.compile(message, readers, skip)
    return known
