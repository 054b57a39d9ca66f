"""`reverb certs DIR`: a private CA and the certificates the gateway, workers and hosts need
for mutual TLS in development (production certificates come from your own PKI).

Writes ca.pem (the CA: REVERB_TLS_CA everywhere), gateway.pem and gateway-key.pem (the
gateway's Ingress listener), host.pem and host-key.pem (the host's: a server certificate
for workers and a client certificate for registering with the gateway), both for
localhost, 127.0.0.1, ::1 and each --host NAME, and worker.pem and worker-key.pem (the
worker's client certificate). Keys are written 0600.
"""

import datetime
import ipaddress
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reverb_cli.errors import CliError

_VALID_DAYS = 365


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Reverb development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
    )


def make_certificates(directory: Path, hosts: list[str]) -> list[Path]:
    """Write the CA, a host (server) and a worker (client) certificate into `directory`;
    return the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Reverb development CA")
    ca = (
        _builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    written = [_write(directory / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))]
    served = ["localhost", "127.0.0.1", "::1", *hosts]
    server, client = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    leaves = (
        ("gateway", [server], served),
        ("host", [server, client], served),
        ("worker", [client], ["reverb-worker"]),
    )
    for stem, usages, names in leaves:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            _builder(_name(f"reverb {stem}"), ca_name, key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(_san(names), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        written.append(_write(directory / f"{stem}.pem", pem))
        written.append(_write(directory / f"{stem}-key.pem", key_pem, private=True))
    return written


def _write(path: Path, data: bytes, *, private: bool = False) -> Path:
    path.touch(mode=0o600 if private else 0o644)
    if private:
        path.chmod(0o600)
    path.write_bytes(data)
    return path


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="NAME",
    help="Another name or IP address the host certificate is valid for (repeatable).",
)
def certs(directory: Path, hosts: tuple[str, ...]) -> None:
    """Make development certificates for mutual TLS between the gateway, workers and hosts in
    DIRECTORY."""
    try:
        written = make_certificates(directory, list(hosts))
    except OSError as error:
        raise CliError(f"cannot write certificates: {error}") from None
    for path in written:
        click.echo(str(path))
    click.echo(
        f"gateway: REVERB_TLS_CERT={directory}/gateway.pem"
        f" REVERB_TLS_KEY={directory}/gateway-key.pem REVERB_TLS_CA={directory}/ca.pem\n"
        f"host:    REVERB_TLS_CERT={directory}/host.pem REVERB_TLS_KEY={directory}/host-key.pem"
        f" REVERB_TLS_CA={directory}/ca.pem REVERB_INGRESS_TLS=true\n"
        f"worker:  REVERB_TLS_CERT={directory}/worker.pem"
        f" REVERB_TLS_KEY={directory}/worker-key.pem REVERB_TLS_CA={directory}/ca.pem"
    )
