"""Where reverb.v1 protobuf messages are built, converted and served; the only modules that
import `reverb_contracts`.

`ingress` is the servicer of the RPCs (messages in and out, over the domain
`servicer.IngressService`, converted by `messages`); `rpc` serves it over gRPC;
`routes` serves the annotated RPCs over HTTP with the generic transcoder
(`json_in`, `parameters`, `json_out`, reading `options`); `openapi` documents them.
"""
