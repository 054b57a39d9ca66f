"""Where reverb.v1 protobuf messages are built and converted (the servicer only reads a
request's scalar fields, and the gRPC server registers the generated service).

`messages` converts them to and from the gateway's domain types (for the
servicer); `json_api` converts them to and from the HTTP API's JSON.
"""
