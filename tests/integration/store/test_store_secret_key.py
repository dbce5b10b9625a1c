"""The Fernet key file: created 0600 once, refused when others can read it, rotation keeps old secrets,
and never replaced by a key of a host's own when the store already holds secrets."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from reddwarf.domain.secret import Secret
from reddwarf.store.database import Database
from reddwarf.store.secrets import KeyFileError, SecretCipher, SecretDecryptionError

REDDWARF = str(Path(sys.executable).with_name("reddwarf"))


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


def store_with_a_secret(tmp_path: Path, key_file: Path) -> str:
    """A SQLite store (at its newest schema) holding one secret encrypted with `key_file`'s key; its URL."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    db = Database.from_url(url, key_file=key_file)
    db.upgrade()
    with db.unit_of_work() as uow:
        uow.secrets.put("instance-1", "admin", Secret("pa55word"))
    db.dispose()
    return url


def test_a_new_store_gets_a_key_and_starts(tmp_path: Path) -> None:
    key_file = tmp_path / "host" / "secret.key"
    db = Database.from_url(f"sqlite:///{tmp_path / 'new.db'}", key_file=key_file)
    db.upgrade()
    db.verify_key()  # nothing stored yet
    with db.unit_of_work() as uow:
        uow.secrets.put("instance-1", "admin", Secret("pa55word"))
    db.verify_key()
    db.dispose()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_a_host_without_the_key_file_refuses_a_store_that_holds_secrets(tmp_path: Path) -> None:
    url = store_with_a_secret(tmp_path, tmp_path / "host-a" / "secret.key")
    missing = tmp_path / "host-b" / "secret.key"
    with pytest.raises(KeyFileError, match="copy the deployment's key file") as raised:
        Database.from_url(url, key_file=missing)
    assert str(missing) in str(raised.value)
    assert not missing.exists(), "a key of its own would make the stored secrets unreadable on this host"


def test_a_host_with_another_key_refuses_to_start(tmp_path: Path) -> None:
    url = store_with_a_secret(tmp_path, tmp_path / "host-a" / "secret.key")
    other = tmp_path / "host-b" / "secret.key"
    SecretCipher(other)  # a key file of its own, e.g. generated before it was pointed at the shared store
    db = Database.from_url(url, key_file=other)
    db.upgrade()
    with pytest.raises(KeyFileError, match="cannot decrypt the secrets") as raised:
        db.verify_key()
    db.dispose()
    assert str(other) in str(raised.value)
    assert "pa55word" not in str(raised.value)


def test_the_server_refuses_to_start_with_another_key_and_says_why(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store_with_a_secret(tmp_path, state / "secret.key")
    (tmp_path / "shared.db").rename(state / "reddwarf.db")
    (state / "secret.key").write_text(Fernet.generate_key().decode() + "\n")
    # A real process: the command configures logging for the whole process, which must not outlive it.
    result = subprocess.run([REDDWARF, "worker", "--state-dir", str(state)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 1, result.stderr
    assert "cannot decrypt the secrets" in result.stderr
    assert "Traceback" not in result.stderr
