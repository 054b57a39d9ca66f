"""Reading the protos' HTTP declarations: google.api.http, field_behavior, reverb.v1 options."""

import re
from collections.abc import Sequence
from typing import Any

from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, MethodDescriptor

from reverb_contracts.v1 import options_pb2

TIMESTAMP = "google.protobuf.Timestamp"
# googleapis-common-protos' stubs type its extensions as plain FieldDescriptors.
_FIELD_BEHAVIOR: Any = field_behavior_pb2.field_behavior
_HTTP: Any = annotations_pb2.http


def http_field(field: FieldDescriptor) -> options_pb2.HttpField:
    return field.GetOptions().Extensions[options_pb2.http_field]


def http_name(field: FieldDescriptor) -> str:
    """The field's name in JSON, in a query string or in a path."""
    return http_field(field).name or field.name


def required(field: FieldDescriptor) -> bool:
    """Marked (google.api.field_behavior) = REQUIRED: a request must give it, a response has it."""
    behaviors: Sequence[int] = field.GetOptions().Extensions[_FIELD_BEHAVIOR]
    return field_behavior_pb2.REQUIRED in behaviors


def http_rule(method: MethodDescriptor) -> http_pb2.HttpRule | None:
    options = method.GetOptions()
    if not options.HasExtension(_HTTP):
        return None
    rule: http_pb2.HttpRule = options.Extensions[_HTTP]
    return rule


def http_route(method: MethodDescriptor) -> options_pb2.HttpRoute:
    return method.GetOptions().Extensions[options_pb2.http_route]


def scope(method: MethodDescriptor) -> str:
    """The scope a key needs for the RPC, as its (reverb.v1.scope) option names it ("ingest");
    ValueError when the RPC declares none."""
    declared: options_pb2.Scope.ValueType = method.GetOptions().Extensions[options_pb2.scope]
    if declared == options_pb2.SCOPE_UNSPECIFIED:
        raise ValueError(f"{method.full_name} declares no (reverb.v1.scope) option")
    return options_pb2.Scope.Name(declared).removeprefix("SCOPE_").lower()


def is_message(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE


def message_of(field: FieldDescriptor) -> Descriptor:
    """The type of a message field."""
    if field.message_type is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return field.message_type


def enum_of(field: FieldDescriptor) -> EnumDescriptor:
    """The type of an enum field."""
    if field.enum_type is None:
        raise TypeError(f"{field.full_name} is not an enum field")
    return field.enum_type


def is_timestamp(field: FieldDescriptor) -> bool:
    return is_message(field) and message_of(field).full_name == TIMESTAMP


def is_map(field: FieldDescriptor) -> bool:
    return is_message(field) and message_of(field).GetOptions().map_entry


def enum_names(field: FieldDescriptor) -> dict[int, str]:
    """An enum's values by number, in lower case without the enum's prefix (buf's
    ENUM_VALUE_PREFIX): RunStatus's RUN_STATUS_QUEUED is "queued"."""
    enum = enum_of(field)
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"
    return {value.number: value.name.removeprefix(prefix).lower() for value in enum.values}
