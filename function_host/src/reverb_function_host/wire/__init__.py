"""The only package that touches the generated reverb.v1 code (`reverb_contracts`):
`messages` converts protobuf messages to and from the SDK's dataclasses and the host's
frames; `service` holds the generated servicer and stub glue."""
