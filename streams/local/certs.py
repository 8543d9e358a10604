"""A throwaway certificate authority for the secure local stack, made with `cryptography`.

`ensure(dir)` writes, once, a CA (`ca.pem`) and one server certificate signed by it for
`localhost` and `127.0.0.1` (`server.pem`: the certificate, then its key, PKCS#8) that the
broker(s) and the registry present. Clients trust `ca.pem` and nothing else, so a client
with the system trust store or another CA fails the handshake, as a real deployment would.
Files that exist are kept: a restarted stack presents the same certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough that a kept local stack never sees one expire mid-test, short enough to be
# obviously a test CA.
_VALID_DAYS = 825


@dataclass(frozen=True)
class LocalCA:
    """Where the CA certificate and the server's certificate and key live."""

    ca_file: Path
    #: The server certificate followed by its unencrypted PKCS#8 key (Kafka's PEM keystore form).
    server_pem: Path
    server_cert: Path
    server_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "streams local test CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    # Keys are created owner-only from the start, never world-readable for an instant.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)


def ensure(directory: Path) -> LocalCA:
    """The CA and server certificate under `directory`, created on first use."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = LocalCA(
        ca_file=directory / "ca.pem",
        server_pem=directory / "server.pem",
        server_cert=directory / "server-cert.pem",
        server_key=directory / "server-key.pem",
    )
    if all(p.is_file() for p in (paths.ca_file, paths.server_pem, paths.server_cert, paths.server_key)):
        return paths

    now = dt.datetime.now(dt.UTC)
    not_before = now - dt.timedelta(minutes=5)  # tolerate a little clock skew
    not_after = now + dt.timedelta(days=_VALID_DAYS)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("streams local test CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            # Clients verify the host they dialled: the stack advertises 127.0.0.1.
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    key_pem = server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    cert_pem = server_cert.public_bytes(pem)
    # The CA's key is not kept: nothing else is ever signed with it.
    _write(paths.server_key, key_pem, private=True)
    _write(paths.server_cert, cert_pem)
    _write(paths.server_pem, cert_pem + key_pem, private=True)
    _write(paths.ca_file, ca_cert.public_bytes(pem))
    return paths
