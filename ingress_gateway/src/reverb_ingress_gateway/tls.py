"""The gateway's gRPC server credentials: TLS, or mutual TLS when a client CA is given."""

import grpc

from reverb_ingress_gateway.settings import GatewaySettings


def server_credentials(settings: GatewaySettings) -> grpc.ServerCredentials | None:
    """TLS credentials for the Ingress listener from REVERB_TLS_CERT/KEY (and CA: callers,
    hosts registering included, must present a certificate it signed); None when TLS is
    off."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    pair = (settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())
    ca = settings.tls_ca.read_bytes() if settings.tls_ca is not None else None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=ca, require_client_auth=ca is not None
    )
