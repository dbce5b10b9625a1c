"""The backup keyring (files in a 0700 directory, rotation keeps old keys) and the backup storage settings."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from reddwarf.domain.errors import PermanentError
from reddwarf.storage.base import ArtifactError
from reddwarf.storage.keyring import CURRENT, Keyring
from reddwarf.storage.settings import BackupStorageSettings

DATA_KEY = bytes(range(32))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_first_key_is_created_private(tmp_path: Path) -> None:
    directory = tmp_path / "control" / "backup-keys"
    keyring = Keyring.load_or_create(directory)
    assert mode(directory) == 0o700
    key_id = keyring.current_id
    assert keyring.key_ids() == [key_id]
    assert mode(directory / key_id) == 0o600 and mode(directory / CURRENT) == 0o600
    assert sorted(p.name for p in directory.iterdir()) == sorted([key_id, CURRENT])
    again = Keyring.load_or_create(directory)
    assert again.current_id == key_id


def test_wrap_and_unwrap(tmp_path: Path) -> None:
    keyring = Keyring.load_or_create(tmp_path / "keys")
    key_id, wrapped = keyring.wrap(DATA_KEY)
    assert key_id == keyring.current_id and DATA_KEY not in wrapped
    assert Keyring.load_or_create(tmp_path / "keys").unwrap(key_id, wrapped) == DATA_KEY


def test_rotation_keeps_old_keys_for_reading(tmp_path: Path) -> None:
    keyring = Keyring.load_or_create(tmp_path / "keys")
    old_id, old_wrapped = keyring.wrap(DATA_KEY)
    other_process = Keyring.load_or_create(tmp_path / "keys")
    new_id = keyring.rotate()
    assert new_id != old_id and keyring.current_id == new_id
    assert other_process.current_id == new_id, "a rotation reaches every process at its next backup"
    assert other_process.wrap(DATA_KEY)[0] == new_id
    assert keyring.unwrap(old_id, old_wrapped) == DATA_KEY
    assert keyring.key_ids() == sorted([old_id, new_id])


def test_unknown_and_invalid_key_ids(tmp_path: Path) -> None:
    keyring = Keyring.load_or_create(tmp_path / "keys")
    _key_id, wrapped = keyring.wrap(DATA_KEY)
    with pytest.raises(ArtifactError) as caught:
        keyring.unwrap("20260101-deadbeef", wrapped)
    assert caught.value.message == f"backup key 20260101-deadbeef is not in {tmp_path / 'keys'}: restore it from escrow"
    for bad in ("../keys/x", CURRENT, ".hidden", ""):
        with pytest.raises(ArtifactError, match="invalid backup key id"):
            keyring.unwrap(bad, wrapped)


def test_a_damaged_key_file_is_named(tmp_path: Path) -> None:
    keyring = Keyring.load_or_create(tmp_path / "keys")
    _key_id, _wrapped = keyring.wrap(DATA_KEY)
    (tmp_path / "keys" / keyring.current_id).write_text("not base64!\n")
    with pytest.raises(PermanentError, match="does not hold a 32-byte key in base64"):
        Keyring.load_or_create(tmp_path / "keys")


def test_a_key_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    keyring = Keyring.load_or_create(tmp_path / "keys")
    key_file = tmp_path / "keys" / keyring.current_id
    key_file.chmod(0o644)
    Keyring.load_or_create(tmp_path / "keys")
    assert mode(key_file) == 0o600


def test_symlinked_key_files_are_refused(tmp_path: Path) -> None:
    keyring = Keyring.load_or_create(tmp_path / "keys")
    key_file = tmp_path / "keys" / keyring.current_id
    (tmp_path / "elsewhere").write_bytes(key_file.read_bytes())
    key_file.unlink()
    key_file.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        Keyring.load_or_create(tmp_path / "keys")


@pytest.mark.skipif(os.geteuid() != 0, reason="not applicable: giving a directory to another user needs root")
def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    with pytest.raises(PermanentError, match="must be a directory owned by the control plane's user"):
        Keyring.load_or_create(directory)


def test_settings_defaults_live_in_the_control_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("REDDWARF_BACKUP_"):
            monkeypatch.delenv(name)
    settings = BackupStorageSettings()
    assert settings.target == "filesystem" and not settings.encrypt
    assert settings.compression_level == 1 and settings.compression_threads == 2
    assert settings.chunk_bytes == 4 << 20
    assert settings.backup_dir(Path("/var/lib/reddwarf")) == Path("/var/lib/reddwarf/control/backups")
    assert settings.key_directory(Path("/var/lib/reddwarf")) == Path("/var/lib/reddwarf/control/backup-keys")
    chosen = BackupStorageSettings(dir=Path("/srv/backups"), key_dir=Path("/srv/keys"))
    assert chosen.backup_dir(Path("/x")) == Path("/srv/backups")
    assert chosen.key_directory(Path("/x")) == Path("/srv/keys")


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDDWARF_BACKUP_TARGET", "s3")
    monkeypatch.setenv("REDDWARF_BACKUP_S3_BUCKET", "backups")
    monkeypatch.setenv("REDDWARF_BACKUP_S3_PREFIX", "/region-one/")
    monkeypatch.setenv("REDDWARF_BACKUP_S3_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("REDDWARF_BACKUP_S3_SECRET_ACCESS_KEY", "wJalrXUtnFEMI")
    monkeypatch.setenv("REDDWARF_BACKUP_ENCRYPT", "true")
    settings = BackupStorageSettings()
    assert settings.target == "s3" and settings.s3_bucket == "backups" and settings.s3_prefix == "region-one"
    assert settings.encrypt
    assert settings.s3_secret_access_key is not None
    assert "wJalrXUtnFEMI" not in repr(settings) and "wJalrXUtnFEMI" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"target": "s3"}, "REDDWARF_BACKUP_S3_BUCKET is required when REDDWARF_BACKUP_TARGET is s3"),
        ({"compression_level": 0}, "must be a zstd level from 1"),
        ({"compression_level": 23}, "must be a zstd level from 1"),
        ({"compression_threads": -1}, "zstd worker threads"),
        ({"chunk_mib": 0}, "MiB of compressed data per stored chunk"),
        ({"dir": "relative/backups"}, "must be an absolute path"),
        ({"s3_prefix": "a/../b"}, "without empty, '.' or '..' parts"),
        ({"s3_access_key_id": "AKID"}, "go together: set both or neither"),
    ],
)
def test_settings_refuse_with_a_clear_message(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        BackupStorageSettings(**fields)  # type: ignore[arg-type]
    assert message in str(caught.value)
