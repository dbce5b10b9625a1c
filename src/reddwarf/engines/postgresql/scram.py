"""Client-side SCRAM-SHA-256 verifiers (RFC 5802 / RFC 7677), in PostgreSQL's stored format (RFC 5803).

`CREATE ROLE ... PASSWORD '<verifier>'` stores a ready verifier as is, so the plain password never crosses
the wire and cannot reach a server log: only the salted, iterated keys do. The password is normalised with
SASLprep (RFC 4013) exactly as PostgreSQL and libpq do: when SASLprep rejects the string, the raw UTF-8
bytes are used instead, as PostgreSQL does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stringprep
import unicodedata
from dataclasses import dataclass

ITERATIONS = 4096  # PostgreSQL's default scram_iterations
SALT_BYTES = 16  # as PostgreSQL's own verifiers
_PREFIX = "SCRAM-SHA-256$"

_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
    stringprep.in_table_a1,  # unassigned code points: prohibited for stored strings
)


def saslprep(password: str) -> str | None:
    """Return the SASLprep form of `password`, or None where SASLprep prohibits it (PostgreSQL then uses raw bytes)."""
    if password.isascii():
        return password  # PostgreSQL's fast path: pure ASCII needs no processing
    mapped = "".join(" " if stringprep.in_table_c12(ch) else ch for ch in password if not stringprep.in_table_b1(ch))
    normalized = unicodedata.normalize("NFKC", mapped)
    if not normalized:
        return None
    if any(check(ch) for ch in normalized for check in _PROHIBITED):
        return None
    rand_al = [stringprep.in_table_d1(ch) for ch in normalized]
    if any(rand_al):
        if any(stringprep.in_table_d2(ch) for ch in normalized):
            return None
        if not (rand_al[0] and rand_al[-1]):
            return None
    return normalized


def _password_bytes(password: str) -> bytes:
    prepared = saslprep(password)
    return (prepared if prepared is not None else password).encode("utf-8")


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", _password_bytes(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return stored_key, server_key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def verifier(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """Return `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` for `password` (random salt by default)."""
    if iterations < 1:
        raise ValueError("iterations must be positive")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    stored_key, server_key = _keys(password, salt, iterations)
    return f"{_PREFIX}{iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


@dataclass(frozen=True, slots=True)
class ParsedVerifier:
    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes


def parse(stored: str) -> ParsedVerifier | None:
    """Parse a stored SCRAM-SHA-256 verifier; None when `stored` is not one (e.g. an md5 hash or NULL)."""
    if not stored.startswith(_PREFIX):
        return None
    try:
        params, keys = stored[len(_PREFIX) :].split("$", 1)
        iterations_text, salt_text = params.split(":", 1)
        stored_text, server_text = keys.split(":", 1)
        return ParsedVerifier(
            iterations=int(iterations_text),
            salt=base64.b64decode(salt_text, validate=True),
            stored_key=base64.b64decode(stored_text, validate=True),
            server_key=base64.b64decode(server_text, validate=True),
        )
    except ValueError:  # binascii.Error is a ValueError
        return None


def matches(password: str, stored: str | None) -> bool:
    """True when the stored verifier was made from `password` (constant-time comparison of the keys)."""
    parsed = parse(stored) if stored else None
    if parsed is None or parsed.iterations < 1:
        return False
    stored_key, server_key = _keys(password, parsed.salt, parsed.iterations)
    return hmac.compare_digest(stored_key, parsed.stored_key) and hmac.compare_digest(server_key, parsed.server_key)
