"""Every reverb.v1.Ingress RPC declares the API key scope it needs, once, in the proto."""

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import MethodDescriptor

from reverb_contracts.v1 import ingress_pb2, options_pb2
from reverb_ingress_gateway.wire.options import scope
from reverb_store.control import SCOPES

INGRESS = ingress_pb2.DESCRIPTOR.services_by_name["Ingress"]


@pytest.mark.parametrize("method", list(INGRESS.methods), ids=lambda method: method.name)
def test_every_rpc_declares_a_known_scope(method: MethodDescriptor) -> None:
    assert scope(method) in SCOPES


def test_the_proto_scopes_are_the_stores() -> None:
    names = [
        name.removeprefix("SCOPE_").lower()
        for name in options_pb2.Scope.DESCRIPTOR.values_by_name
        if name != "SCOPE_UNSPECIFIED"
    ]
    assert tuple(names) == SCOPES


def test_only_the_registration_calls_take_a_host_key() -> None:
    hosts = [method.name for method in INGRESS.methods if scope(method) == "host"]
    assert hosts == ["RegisterApp", "RenewHostLease", "ReleaseHostLease"]


def test_an_rpc_without_a_scope_is_refused() -> None:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(
        descriptor_pb2.FileDescriptorProto(
            name="unscoped.proto",
            package="unscoped",
            message_type=[descriptor_pb2.DescriptorProto(name="Empty")],
            service=[
                descriptor_pb2.ServiceDescriptorProto(
                    name="Service",
                    method=[
                        descriptor_pb2.MethodDescriptorProto(
                            name="Call",
                            input_type=".unscoped.Empty",
                            output_type=".unscoped.Empty",
                        )
                    ],
                )
            ],
        )
    )
    method = pool.FindServiceByName("unscoped.Service").methods_by_name["Call"]
    with pytest.raises(ValueError, match="declares no"):
        scope(method)
