"""Throw-away certificate authorities and certificates for TLS tests (`cryptography`).

    ca = CertAuthority.create(tmp_path, "test-ca")
    server = ca.issue(tmp_path / "server", "localhost", ip="127.0.0.1")
    client = ca.issue(tmp_path / "client", "collector", client=True)

Keys are ECDSA P-256 (fast to make); certificates are valid from an hour ago for a day.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(
        now + datetime.timedelta(days=1)
    )


@dataclass(frozen=True)
class Issued:
    """A certificate and its key on disk (PEM); `pem`/`key_pem` are the bytes."""

    cert: Path
    key: Path
    serial: int

    @property
    def pem(self) -> bytes:
        return self.cert.read_bytes()

    @property
    def key_pem(self) -> bytes:
        return self.key.read_bytes()


@dataclass(frozen=True)
class CertAuthority:
    """A self-signed CA; `cert` is its PEM file (what clients and servers trust)."""

    cert: Path
    key_obj: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate

    @classmethod
    def create(cls, directory: Path, common_name: str = "via-test-ca") -> CertAuthority:
        directory.mkdir(parents=True, exist_ok=True)
        key = _key()
        builder = _validity(
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
        )
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        ).add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        ).add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )  # fmt: skip
        cert = builder.sign(key, hashes.SHA256())
        path = directory / f"{common_name}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(path, key, cert)

    @property
    def pem(self) -> bytes:
        return self.cert.read_bytes()

    def issue(
        self,
        stem: Path,
        common_name: str,
        *,
        dns: tuple[str, ...] = ("localhost",),
        ip: tuple[str, ...] = ("127.0.0.1",),
        client: bool = False,
    ) -> Issued:
        """A leaf certificate written to ``stem.pem`` and ``stem.key``."""
        stem.parent.mkdir(parents=True, exist_ok=True)
        key = _key()
        serial = x509.random_serial_number()
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = _validity(
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
        )
        builder = builder.add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        ).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key_obj.public_key()),
            critical=False,
        )  # fmt: skip
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key_obj, hashes.SHA256())
        cert_path, key_path = stem.with_suffix(".pem"), stem.with_suffix(".key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_key_pem(key))
        key_path.chmod(0o600)
        return Issued(cert_path, key_path, serial)


def served_serial(der: bytes) -> int:
    """The serial number of a DER certificate (what a server presented)."""
    return x509.load_der_x509_certificate(der).serial_number
