"""Encryption of secrets at rest: a Fernet key kept in a 0600 file beside the metadata store.

The key file holds one urlsafe-base64 Fernet key per line. The first key encrypts; every key decrypts, so an
operator rotates by putting a new key on the first line and keeping the old ones below it until every
secret has been rewritten. The file is created (atomically, 0600) when it does not exist yet; a file that
group or others may read is refused, because whoever reads it reads every password in the store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from reddwarf.domain.errors import ServiceUnavailable
from reddwarf.domain.secret import Secret

log = logging.getLogger(__name__)


class KeyFileError(Exception):
    """The key file is unusable (unsafe permissions, empty, malformed, or unreadable)."""


class SecretDecryptionError(ServiceUnavailable):
    """A stored secret cannot be decrypted with any key in the key file (wrong or rotated-out key).

    A deployment problem, not a tenant's: typically a host of a shared PostgreSQL store that generated its
    own key instead of being given the others'. The API answers 503 with this message (never a 500)."""


class SecretCipher:
    """Encrypts and decrypts `Secret` values with the keys in `key_file` (created if missing)."""

    def __init__(self, key_file: Path) -> None:
        self._key_file = key_file
        keys = _load_or_create_keys(key_file)
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @property
    def key_file(self) -> Path:
        return self._key_file

    def encrypt(self, secret: Secret) -> str:
        """Return an opaque ASCII token (Fernet: AES-128-CBC + HMAC-SHA256, random IV)."""
        return self._fernet.encrypt(secret.reveal().encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> Secret:
        try:
            plain = self._fernet.decrypt(token.encode("ascii"))
        except InvalidToken as exc:
            log.error("a stored secret cannot be decrypted with the keys in %s: every host sharing a store "
                      "needs the same key file", self._key_file)
            raise SecretDecryptionError(
                "Reddwarf cannot read its stored credentials on this server (encryption key mismatch); "
                "an operator must install the deployment's key file."
            ) from exc
        return Secret(plain.decode("utf-8"))


def _load_or_create_keys(key_file: Path) -> list[bytes]:
    if not key_file.exists():
        _create_key_file(key_file)
    try:
        mode = key_file.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"secret key file {key_file} is accessible to group or others "
                f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {key_file}"
            )
        lines = key_file.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read secret key file {key_file}: {exc.__class__.__name__}") from exc
    keys = [line.strip().encode("ascii") for line in lines if line.strip() and not line.startswith("#")]
    if not keys:
        raise KeyFileError(f"secret key file {key_file} holds no key")
    for number, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError as exc:
            # Never echo the line: it is key material.
            raise KeyFileError(f"secret key file {key_file}: key {number} is not a Fernet key") from exc
    return keys


def _create_key_file(key_file: Path) -> None:
    """Write a fresh key to a private temporary file (its name unique to the process and the call), then
    link it into place.

    `os.link` fails if the target exists, so when several processes start at once exactly one key wins
    and every process reads that one.
    """
    key_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = key_file.with_name(f".{key_file.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, key_file)
        except FileExistsError:
            return
        log.info("created secret key file %s", key_file)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
