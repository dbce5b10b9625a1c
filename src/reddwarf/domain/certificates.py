"""Certificates Reddwarf makes itself (pure: nothing here reads or writes anything but memory).

`new_authority()` makes a certificate authority (an EC P-256 key and a self-signed CA certificate, valid
`CA_VALIDITY`); `CertificateAuthority.issue` signs a key and certificate for a server and/or client naming its
addresses. Where a CA is kept and who trusts it is `reddwarf.store.authority`'s (the installation's CA and each
replication set's own). `self_signed` is a server's placeholder where nothing needs to trust it yet (a MariaDB
server must have TLS files from its first start to take a replica later without a restart).

An EC P-256 key: every engine here (OpenSSL underneath PostgreSQL, MariaDB and Redis) takes it, and it signs
in well under a millisecond.
"""

from __future__ import annotations

import datetime
import ipaddress
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reddwarf.domain.secret import Secret

CA_VALIDITY = datetime.timedelta(days=3650)
# A member's certificate outlives any replica worth keeping; it is issued again at each start of its server.
LEAF_VALIDITY = datetime.timedelta(days=397)
_BACKDATE = datetime.timedelta(minutes=5)  # clocks of several hosts differ a little


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate (PEM) for one server or client, its private key (PEM, a secret) and the CA's certificate
    (PEM) to verify the other end with."""

    certificate: str
    key: Secret
    ca_certificate: str


class CertificateAuthority:
    """Signs certificates for the members of replication sets (`issue`)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self._certificate = certificate

    @property
    def certificate_pem(self) -> str:
        return self._certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def key_pem(self) -> Secret:
        return Secret(_private_pem(self._key))

    def issue(
        self, common_name: str, *, addresses: tuple[str, ...] = (), names: tuple[str, ...] = (),
        server: bool = True, client: bool = False,
    ) -> Issued:
        """A new key and a certificate for `common_name` that names `addresses` (IP addresses) and `names`
        (DNS names) as subject alternative names, for TLS servers and/or clients. A certificate with no
        alternative name is for a client only (verify-full checks a server's name or address)."""
        if not (server or client):
            raise ValueError("a certificate is for a server, a client or both")
        if server and not (addresses or names):
            raise ValueError("a server's certificate names its address or its host name")
        sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        sans += [x509.DNSName(name) for name in names]
        key = ec.generate_private_key(ec.SECP256R1())
        moment = datetime.datetime.now(datetime.UTC)
        usages = [oid for oid, wanted in ((ExtendedKeyUsageOID.SERVER_AUTH, server),
                                          (ExtendedKeyUsageOID.CLIENT_AUTH, client)) if wanted]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(moment - _BACKDATE)
            .not_valid_after(min(moment + LEAF_VALIDITY, self._certificate.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_encipherment=False, content_commitment=False, data_encipherment=False,
                key_agreement=True, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        return Issued(
            certificate=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            key=Secret(_private_pem(key)),
            ca_certificate=self.certificate_pem,
        )


def _private_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def new_authority() -> CertificateAuthority:
    """A new CA (a new key, a self-signed certificate valid `CA_VALIDITY`), kept nowhere yet."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Reddwarf"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"Reddwarf internal CA {uuid.uuid4()}")])
    moment = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - _BACKDATE)
        .not_valid_after(moment + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, key_encipherment=False, content_commitment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(key, certificate)


def self_signed(common_name: str, addresses: tuple[str, ...]) -> Issued:
    """A throwaway CA of its own and a server-and-client certificate from it naming `addresses`: TLS files a
    server can start with when nobody is to trust it (its key is never kept)."""
    return new_authority().issue(common_name, addresses=addresses, server=True, client=True)
