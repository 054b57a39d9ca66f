"""Generated protobuf and gRPC code for the reverb.v1 contracts."""
