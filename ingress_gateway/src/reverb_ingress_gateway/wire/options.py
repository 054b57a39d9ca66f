"""Reading the HTTP declarations of the protos: google.api.http, field_behavior, reverb.v1 options."""

import re

from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor

from reverb_contracts.v1 import options_pb2

TIMESTAMP = "google.protobuf.Timestamp"


def http_field(field: FieldDescriptor) -> options_pb2.HttpField:
    return field.GetOptions().Extensions[options_pb2.http_field]


def http_name(field: FieldDescriptor) -> str:
    """The field's name in JSON, in a query string or in a path."""
    return http_field(field).name or field.name


def required(field: FieldDescriptor) -> bool:
    """Marked (google.api.field_behavior) = REQUIRED: a request must give it, a response has it."""
    behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    return field_behavior_pb2.REQUIRED in behaviors


def http_rule(method: MethodDescriptor) -> http_pb2.HttpRule | None:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return None
    return options.Extensions[annotations_pb2.http]


def http_route(method: MethodDescriptor) -> options_pb2.HttpRoute:
    return method.GetOptions().Extensions[options_pb2.http_route]


def is_message(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE


def is_timestamp(field: FieldDescriptor) -> bool:
    return is_message(field) and field.message_type.full_name == TIMESTAMP


def is_map(field: FieldDescriptor) -> bool:
    return is_message(field) and field.message_type.GetOptions().map_entry


def enum_names(field: FieldDescriptor) -> dict[int, str]:
    """An enum's values by number, in lower case without the enum's prefix (buf's
    ENUM_VALUE_PREFIX): RunStatus's RUN_STATUS_QUEUED is "queued"."""
    enum = field.enum_type
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"
    return {value.number: value.name.removeprefix(prefix).lower() for value in enum.values}
