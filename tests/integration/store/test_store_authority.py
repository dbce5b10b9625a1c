"""Reddwarf's own certificate authority in the store (`store.authority`): made once per installation, whoever
asks first, its key encrypted at rest; a member that trusts it completes a TLS handshake only with a server
holding a certificate it signed for that very address (a squatter on a dead primary's address, with a
certificate of its own or one of the CA's for another address, fails before any credential could be sent)."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from reddwarf.domain.certificates import CertificateAuthority, Issued, new_authority
from reddwarf.store import Database
from reddwarf.store.authority import CA_OWNER, authority

MEMBER = "127.0.0.1"


def _ca(db: Database) -> CertificateAuthority:
    with db.unit_of_work() as uow:
        return authority(uow)


def test_the_ca_is_made_once_and_its_key_is_encrypted_at_rest(db: Database) -> None:
    first, again = _ca(db), _ca(db)
    assert first.certificate_pem == again.certificate_pem
    with db._engine.connect() as conn:
        rows = conn.execute(text("select name, ciphertext from secrets where owner_id = :o"), {"o": CA_OWNER}).all()
    assert {name for name, _ in rows} == {"key", "certificate"}
    assert all("PRIVATE KEY" not in ciphertext and "CERTIFICATE" not in ciphertext for _, ciphertext in rows)


def test_processes_that_ask_at_once_share_one_ca(db: Database) -> None:
    start = threading.Barrier(3)
    made: list[str] = []

    def ask() -> None:
        start.wait()
        made.append(_ca(db).certificate_pem)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(made) == 3 and len(set(made)) == 1
    assert _ca(db).certificate_pem == made[0]


def _files(where: Path, issued: Issued) -> tuple[Path, Path]:
    where.mkdir()
    certificate, key = where / "server.crt", where / "server.key"
    certificate.write_text(issued.certificate)
    key.write_text(issued.key.reveal())
    key.chmod(0o600)
    return certificate, key


@contextmanager
def _tls_server(certificate: Path, key: Path) -> Iterator[int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    listener = socket.create_server((MEMBER, 0))
    listener.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"hello")
        except (ssl.SSLError, OSError):
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(10)


def _handshake(ca_pem: str, port: int) -> bytes:
    """A member's client: verify-full against the CA, the address it means to reach as the name."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem)
    with socket.create_connection((MEMBER, port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=MEMBER) as tls:
        return tls.recv(5)


def test_a_member_reaches_only_a_server_the_ca_certified_for_that_address(db: Database, tmp_path: Path) -> None:
    ca = _ca(db)
    with _tls_server(*_files(tmp_path / "primary", ca.issue("primary", addresses=(MEMBER,)))) as port:
        assert _handshake(ca.certificate_pem, port) == b"hello"
    # The CA's certificate for another member's address: refused (verify-full checks the address).
    with _tls_server(*_files(tmp_path / "other", ca.issue("other", addresses=("127.0.0.2",)))) as port, \
            pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        _handshake(ca.certificate_pem, port)
    # A squatter's own CA, with a certificate for the very address: refused (not signed by Reddwarf's CA).
    other_db_ca = new_authority()
    with _tls_server(*_files(tmp_path / "squatter", other_db_ca.issue("primary", addresses=(MEMBER,)))) as port, \
            pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        _handshake(ca.certificate_pem, port)
    # A client-only certificate names no address and cannot serve as a server's.
    with pytest.raises(ValueError, match="names its address"):
        ca.issue("nobody")
    assert ca.issue("replica", client=True, server=False).ca_certificate == ca.certificate_pem

