"""The only place reverb.v1 protobuf messages are built and read.

`messages` converts them to and from the gateway's domain types (for the
servicer); `json_api` converts them to and from the HTTP API's JSON.
"""
