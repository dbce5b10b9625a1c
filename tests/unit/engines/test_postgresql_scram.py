"""Client-side SCRAM-SHA-256 verifiers in PostgreSQL's stored format (PostgreSQL's acceptance: integration)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from reddwarf.engines.postgresql import scram


def test_verifier_has_postgresql_format_and_no_password() -> None:
    text = scram.verifier("pencil")
    assert text.startswith("SCRAM-SHA-256$4096:")
    assert "pencil" not in text
    parsed = scram.parse(text)
    assert parsed is not None
    assert parsed.iterations == 4096
    assert len(parsed.salt) == 16
    assert len(parsed.stored_key) == len(parsed.server_key) == 32


def test_verifier_matches_rfc_definitions() -> None:
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")  # RFC 7677's example salt
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = base64.b64encode(hashlib.sha256(client_key).digest()).decode()
    server_key = base64.b64encode(hmac.new(salted, b"Server Key", hashlib.sha256).digest()).decode()
    expected = f"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==${stored_key}:{server_key}"
    assert scram.verifier("pencil", salt=salt) == expected


def test_salts_are_random() -> None:
    assert scram.verifier("pencil") != scram.verifier("pencil")


def test_matches_only_the_right_password() -> None:
    stored = scram.verifier("correct horse")
    assert scram.matches("correct horse", stored)
    assert not scram.matches("correct horsE", stored)
    assert not scram.matches("correct horse", "md5abcdef")
    assert not scram.matches("correct horse", None)
    assert not scram.matches("correct horse", "SCRAM-SHA-256$x:y$z:w")


def test_saslprep_normalises_like_postgresql() -> None:
    assert scram.saslprep("plain ascii\x01") == "plain ascii\x01"  # PostgreSQL's ASCII fast path
    assert scram.saslprep("\ufb01x") == "fix"  # NFKC: the ﬁ ligature
    assert scram.saslprep("a\u00adb") == "ab"  # soft hyphen maps to nothing
    assert scram.saslprep("a\u00a0b") == "a b"  # non-ASCII space maps to space
    assert scram.saslprep("a\u200eb") is None  # prohibited (LRM): raw bytes are used
    assert scram.saslprep("\u0627a\u0628") is None  # RandAL mixed with L
    assert scram.verifier("\ufb01", salt=b"s" * 16) == scram.verifier("fi", salt=b"s" * 16)
