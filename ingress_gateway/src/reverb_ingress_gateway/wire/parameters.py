"""Query strings and path parameters onto reverb.v1 messages.

A query parameter or a path segment is text: a string is itself, a number its
digits, a bool "true" or "false", an enum its lower-case name without the
enum's prefix (a repeated enum also takes comma-separated names). Errors are
InvalidArgument naming the parameter by its HTTP name.
"""

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from reverb_ingress_gateway.errors import InvalidArgument
from reverb_ingress_gateway.wire.json_in import INTEGERS, Misfit, integer_check
from reverb_ingress_gateway.wire.options import enum_names, http_name, is_message


class Query(Protocol):
    """A query string's values by key (Starlette's QueryParams is one)."""

    def getlist(self, key: str) -> list[str]: ...


QuerySetter = Callable[[Message, Sequence[str]], None]


def query_setter(field: FieldDescriptor) -> QuerySetter:
    """Sets `field` from a query parameter's values (the first, unless repeated); a repeated
    enum also takes comma-separated values. Errors are InvalidArgument naming the parameter."""
    name = field.name
    if is_message(field):
        raise TypeError(f"{field.full_name}: a message cannot be a query parameter")
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _enum_query_setter(field)
    convert = _text(field)
    if field.is_repeated:
        return lambda message, values: getattr(message, name).extend(
            convert(value) for value in values if value
        )

    def first(message: Message, values: Sequence[str]) -> None:
        if values[0]:
            setattr(message, name, convert(values[0]))

    return first


def _enum_query_setter(field: FieldDescriptor) -> QuerySetter:
    name = field.name
    key = http_name(field)
    numbers = {name: number for number, name in enum_names(field).items() if number != 0}
    known = ", ".join(numbers)

    def enum_numbers(values: Sequence[str]) -> list[int]:
        found = []
        for value in values:
            for part in filter(None, (part.strip().lower() for part in value.split(","))):
                if part not in numbers:
                    raise InvalidArgument(f"unknown {key} {part!r}; one of: {known}")
                found.append(numbers[part])
        return found

    if field.is_repeated:
        return lambda message, values: getattr(message, name).extend(enum_numbers(values))

    def one_enum(message: Message, values: Sequence[str]) -> None:
        found = enum_numbers(values[:1])
        if found:
            setattr(message, name, found[0])

    return one_enum


def _text(field: FieldDescriptor) -> Callable[[str], Any]:
    """A query or path value's text to the field's Python value."""
    key = http_name(field)
    if field.type == FieldDescriptor.TYPE_STRING:
        return str
    if field.type == FieldDescriptor.TYPE_BOOL:

        def boolean(text: str) -> bool:
            if text not in ("true", "false"):
                raise InvalidArgument(f"{key} must be true or false")
            return text == "true"

        return boolean
    if field.cpp_type in INTEGERS:
        check, problem = integer_check(field)

        def integer(text: str) -> int:
            try:
                if not text.removeprefix("-").isdigit():
                    raise Misfit([], problem)
                return check(int(text))
            except Misfit:
                raise InvalidArgument(f"{key} {problem}") from None

        return integer
    raise TypeError(f"{field.full_name}: this field type cannot be a query or path parameter")


def path_setter(field: FieldDescriptor) -> Callable[[Message, str], None]:
    """Sets `field` from a path parameter."""
    if field.is_repeated or is_message(field) or field.type == FieldDescriptor.TYPE_ENUM:
        raise TypeError(f"{field.full_name}: a path parameter must be a string or a number")
    name = field.name
    convert = _text(field)
    return lambda message, text: setattr(message, name, convert(text))


def read_query(setters: Sequence[tuple[str, QuerySetter]], message: Message, query: Query) -> None:
    for key, put in setters:
        values = query.getlist(key)
        if values:
            put(message, values)
