"""The host's gRPC credentials: its server's (TLS, or mutual TLS when a client CA is given),
and its channel's to the gateway (REVERB_INGRESS_TLS)."""

import grpc
from grpc import aio

from reverb_function_host.settings import HostSettings


def server_credentials(settings: HostSettings) -> grpc.ServerCredentials | None:
    """TLS credentials from REVERB_TLS_CERT/KEY (and CA: clients must present a certificate
    it signed); None when TLS is off."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    pair = (settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())
    ca = settings.tls_ca.read_bytes() if settings.tls_ca is not None else None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=ca, require_client_auth=ca is not None
    )


def ingress_channel(settings: HostSettings) -> aio.Channel:
    """A channel to the gateway's Ingress service: over TLS when REVERB_INGRESS_TLS is set,
    verifying the gateway with REVERB_TLS_CA (the system's roots when unset) and presenting
    REVERB_TLS_CERT/KEY (a gateway with a client CA requires them); else plaintext."""
    if not settings.ingress_tls:
        return aio.insecure_channel(settings.ingress_address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=settings.tls_ca.read_bytes() if settings.tls_ca is not None else None,
        private_key=settings.tls_key.read_bytes() if settings.tls_key is not None else None,
        certificate_chain=settings.tls_cert.read_bytes() if settings.tls_cert is not None else None,
    )
    return aio.secure_channel(settings.ingress_address, credentials)
