"""Reddwarf's own certificate authorities, kept in the metadata store: the trust that replication channels which
cannot use a unix socket (MariaDB's and Redis's replicas reach their primary over TCP) are checked against, with
verify-full (the certificates themselves are made by `reddwarf.domain.certificates`).

A replica reconnecting to a dead primary's address must never hand a credential to whatever listens there now
(docs/security.md): it trusts only its set's CA (`set_authority`), and the primary's certificate names the
primary's own address, so a server of anyone else (which has no certificate of that address signed by this CA)
fails the handshake before a credential is sent. A CA per set, not one per installation: Redis checks a
primary's chain but not its address (measured, docs/replication.md), and an address is reused, so a certificate
of another set, or of a former holder of the address, must never pass. The installation's CA (`authority`) is for
tenant-facing TLS later.

A CA is kept by the control plane beside the secrets it protects: its private key is a secret (encrypted at rest
with the store's key, never on disk in clear, never logged); its certificate is public. Every control-plane
process of an installation shares it, whatever host it runs on. The first process that needs it creates it;
concurrent creators converge on the one that was inserted first (an insert that does nothing on a conflict, then
a read).
"""

from __future__ import annotations

import logging
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from reddwarf.domain.certificates import CertificateAuthority, new_authority
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.secret import Secret
from reddwarf.store.uow import UnitOfWork

log = logging.getLogger(__name__)

CA_OWNER = "reddwarf:certificate-authority"
SET_OWNER_PREFIX = "reddwarf:replication-set:"
KEY_NAME, CERTIFICATE_NAME, CREDENTIAL_NAME = "key", "certificate", "replication-password"


def _loaded(key_pem: Secret, certificate_pem: Secret) -> CertificateAuthority:
    try:
        key = serialization.load_pem_private_key(key_pem.reveal().encode("ascii"), password=None)
        certificate = x509.load_pem_x509_certificate(certificate_pem.reveal().encode("ascii"))
    except ValueError as exc:
        raise PermanentError(f"Reddwarf's certificate authority in the store is unreadable: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != certificate.public_key():
        raise PermanentError("Reddwarf's certificate authority in the store: its key does not match its certificate")
    return CertificateAuthority(key, certificate)


def authority(uow: UnitOfWork, owner: str = CA_OWNER) -> CertificateAuthority:
    """The CA kept under `owner` (by default the installation's), created in the store by the first caller (in
    `uow`, a writing unit of work; a concurrent creator that inserted first wins and this one uses its CA)."""
    found = uow.secrets.of_owner(owner)
    if KEY_NAME in found and CERTIFICATE_NAME in found:
        return _loaded(found[KEY_NAME], found[CERTIFICATE_NAME])
    made = new_authority()
    if uow.secrets.add(owner, KEY_NAME, made.key_pem) and uow.secrets.add(
        owner, CERTIFICATE_NAME, Secret(made.certificate_pem)
    ):
        log.info("created a certificate authority (%s)", owner)
        return made
    found = uow.secrets.of_owner(owner)
    if KEY_NAME not in found or CERTIFICATE_NAME not in found:
        raise PermanentError("Reddwarf's certificate authority in the store is incomplete (a key without its "
                             "certificate): an operator must remove it or restore both")
    return _loaded(found[KEY_NAME], found[CERTIFICATE_NAME])


def set_owner(set_id: str) -> str:
    return SET_OWNER_PREFIX + set_id


def set_authority(uow: UnitOfWork, set_id: str) -> CertificateAuthority:
    """The CA of one replication set alone: its members' certificates, and nothing else, pass its members'
    verification."""
    return authority(uow, set_owner(set_id))


def set_credential(uow: UnitOfWork, set_id: str) -> Secret:
    """The password of the set's replication account (engines that need one beside the certificate), made by
    the first caller; concurrent callers converge on the one inserted first."""
    owner = set_owner(set_id)
    found = uow.secrets.of_owner(owner).get(CREDENTIAL_NAME)
    if found is not None:
        return found
    uow.secrets.add(owner, CREDENTIAL_NAME, Secret(secrets.token_urlsafe(32)))
    made = uow.secrets.of_owner(owner).get(CREDENTIAL_NAME)
    if made is None:
        raise PermanentError(f"the replication credential of set {set_id} could not be kept")
    return made
