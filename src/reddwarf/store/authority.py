"""Reddwarf's own certificate authority: the trust that replication channels which cannot use a unix socket
(MariaDB's and Redis's replicas reach their primary over TCP) are checked against, with verify-full.

A replica reconnecting to a dead primary's address must never hand a credential to whatever listens there now
(docs/security.md): it trusts only this CA, and the primary's certificate names the primary's own address, so a
server of anyone else (which has no certificate of that address signed by this CA) fails the handshake before a
credential is sent. Tenant-facing TLS can reuse it later.

The CA is kept by the control plane, in the metadata store, beside the secrets it protects: its private key is a
secret (encrypted at rest with the store's key, never on disk in clear, never logged); its certificate is public.
Every control-plane process of an installation shares it, whatever host it runs on. The first process that needs
it creates it; concurrent creators converge on the one that was inserted first (an insert that does nothing on a
conflict, then a read). An EC P-256 key: every engine here (OpenSSL underneath PostgreSQL, MariaDB and Redis)
takes it, and it signs in well under a millisecond.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reddwarf.domain.errors import PermanentError
from reddwarf.domain.secret import Secret
from reddwarf.store.uow import UnitOfWork

log = logging.getLogger(__name__)

CA_OWNER = "reddwarf:certificate-authority"
KEY_NAME, CERTIFICATE_NAME = "key", "certificate"
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


def _loaded(key_pem: Secret, certificate_pem: Secret) -> CertificateAuthority:
    try:
        key = serialization.load_pem_private_key(key_pem.reveal().encode("ascii"), password=None)
        certificate = x509.load_pem_x509_certificate(certificate_pem.reveal().encode("ascii"))
    except ValueError as exc:
        raise PermanentError(f"Reddwarf's certificate authority in the store is unreadable: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != certificate.public_key():
        raise PermanentError("Reddwarf's certificate authority in the store: its key does not match its certificate")
    return CertificateAuthority(key, certificate)


def authority(uow: UnitOfWork) -> CertificateAuthority:
    """The installation's CA, created in the store by the first caller (in `uow`, a writing unit of work; a
    concurrent creator that inserted first wins and this one uses its CA)."""
    found = uow.secrets.of_owner(CA_OWNER)
    if KEY_NAME in found and CERTIFICATE_NAME in found:
        return _loaded(found[KEY_NAME], found[CERTIFICATE_NAME])
    made = new_authority()
    if uow.secrets.add(CA_OWNER, KEY_NAME, made.key_pem) and uow.secrets.add(
        CA_OWNER, CERTIFICATE_NAME, Secret(made.certificate_pem)
    ):
        log.info("created Reddwarf's certificate authority")
        return made
    found = uow.secrets.of_owner(CA_OWNER)
    if KEY_NAME not in found or CERTIFICATE_NAME not in found:
        raise PermanentError("Reddwarf's certificate authority in the store is incomplete (a key without its "
                             "certificate): an operator must remove it or restore both")
    return _loaded(found[KEY_NAME], found[CERTIFICATE_NAME])
