"""The Fernet key file: created 0600 once, refused when others can read it, rotation keeps old secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from reddwarf.domain.secret import Secret
from reddwarf.store.secrets import KeyFileError, SecretCipher, SecretDecryptionError


def test_the_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    key_file = tmp_path / "state" / "secret.key"
    first = SecretCipher(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token = first.encrypt(Secret("pa55word"))
    assert "pa55word" not in token
    assert SecretCipher(key_file).decrypt(token) == Secret("pa55word")
    assert [p.name for p in key_file.parent.iterdir()] == ["secret.key"]


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    SecretCipher(key_file)
    key_file.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        SecretCipher(key_file)


def test_a_malformed_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text("not-a-fernet-key-but-maybe-sensitive\n")
    key_file.chmod(0o600)
    with pytest.raises(KeyFileError) as caught:
        SecretCipher(key_file)
    assert "maybe-sensitive" not in str(caught.value)


def test_rotation_decrypts_with_old_keys_and_encrypts_with_the_first(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    old = SecretCipher(key_file)
    token = old.encrypt(Secret("old-secret"))
    new_key = Fernet.generate_key().decode()
    key_file.write_text(new_key + "\n" + key_file.read_text())
    rotated = SecretCipher(key_file)
    assert rotated.decrypt(token) == Secret("old-secret")
    fresh = rotated.encrypt(Secret("new-secret"))
    assert Fernet(new_key.encode()).decrypt(fresh.encode()) == b"new-secret"


def test_a_wrong_key_gives_a_clear_error(tmp_path: Path) -> None:
    token = SecretCipher(tmp_path / "a.key").encrypt(Secret("x"))
    with pytest.raises(SecretDecryptionError, match="encryption key mismatch") as raised:
        SecretCipher(tmp_path / "b.key").decrypt(token)
    assert raised.value.status == 503
    assert str(tmp_path) not in raised.value.message, "tenants may read it: no host path"
