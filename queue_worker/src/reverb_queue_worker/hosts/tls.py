"""The worker's credentials for channels to hosts: TLS, with a client certificate for
mutual TLS."""

import grpc

from reverb_queue_worker.settings import WorkerSettings


def channel_credentials(settings: WorkerSettings) -> grpc.ChannelCredentials | None:
    """TLS credentials from REVERB_TLS_CA/CERT/KEY; None (plaintext) when none is set."""
    if settings.tls_ca is None and settings.tls_cert is None:
        return None
    ca = settings.tls_ca.read_bytes() if settings.tls_ca is not None else None
    key = settings.tls_key.read_bytes() if settings.tls_key is not None else None
    cert = settings.tls_cert.read_bytes() if settings.tls_cert is not None else None
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
