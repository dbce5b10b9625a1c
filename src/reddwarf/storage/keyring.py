"""The control plane's backup keys: they wrap the per-backup data keys of encrypted backups.

One file per key in the key directory (0700, the control plane's; files 0600), named by the key's id and
holding 32 random bytes in base64 on one line; the file `current` names the key new backups are wrapped
with. `rotate()` adds a key and makes it current; old keys stay for reading the backups they wrapped (each
backup's manifest records the id of its key). Losing a key loses every backup it wrapped: operators escrow
the directory (docs/backups.md).

Several control-plane processes share the directory: the first key is created with an exclusive link of
`current` (one creator wins, the others adopt its key), `current` is re-read at every `wrap` so a rotation
takes effect in every process at its next backup, and key files are never changed once written.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import re
import secrets
import stat
import time
from pathlib import Path

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from reddwarf.domain.errors import PermanentError
from reddwarf.storage.base import ArtifactError

log = logging.getLogger(__name__)

KEY_BYTES = 32
CURRENT = "current"
DIR_MODE = 0o700
FILE_MODE = 0o600
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_MAX_KEY_FILE = 4096


def valid_key_id(key_id: str) -> bool:
    """Key ids name files: letters, digits, '-' and '_', never `current`, never a path."""
    return bool(_KEY_ID.match(key_id)) and key_id != CURRENT


def _new_key_id() -> str:
    return f"{time.strftime('%Y%m%d', time.gmtime())}-{secrets.token_hex(4)}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, text: str) -> None:
    """Creates `path` (0600, never an existing file or a symlink) with `text`, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


class Keyring:
    """The backup keys in one directory (see the module docstring). Build it with `load_or_create`."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._keys: dict[str, bytes] = {}

    @classmethod
    def load_or_create(cls, directory: Path) -> Keyring:
        """The keyring in `directory`, with a first key created if it has none; the directory is made the
        control plane's (0700) and refused when another user owns it."""
        keyring = cls(directory)
        keyring._prepare_dir()
        if not (directory / CURRENT).exists():
            keyring._create_first()
        keyring._read_key(keyring.current_id)
        return keyring

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def current_id(self) -> str:
        """The id of the key new backups are wrapped with (re-read: another process may have rotated)."""
        text = self._read_small(self._dir / CURRENT).strip()
        if not valid_key_id(text):
            raise PermanentError(f"{self._dir / CURRENT} does not name a backup key (found {text[:80]!r})")
        return text

    def key_ids(self) -> list[str]:
        return sorted(p.name for p in self._dir.iterdir() if valid_key_id(p.name))

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        """`data_key` wrapped (AES key wrap, RFC 3394) by the current key, with that key's id."""
        key_id = self.current_id
        return key_id, aes_key_wrap(self._read_key(key_id), data_key)

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        """The data key `wrapped` by key `key_id`; ArtifactError when that key is not here or does not fit."""
        if not valid_key_id(key_id):
            raise ArtifactError(f"the backup names an invalid backup key id {key_id[:80]!r}")
        if not (self._dir / key_id).exists():
            raise ArtifactError(f"backup key {key_id} is not in {self._dir}: restore it from escrow")
        try:
            return aes_key_unwrap(self._read_key(key_id), wrapped)
        except InvalidUnwrap:
            raise ArtifactError(
                f"backup key {key_id} in {self._dir} does not open this backup's data key: the key file was "
                "replaced by another key; restore the original from escrow"
            ) from None

    def rotate(self) -> str:
        """Adds a new key and makes it current; the old keys stay to read older backups. The new id."""
        key_id = self._new_key_file()
        staged = self._dir / f".{CURRENT}-{secrets.token_hex(4)}"
        _write_new(staged, key_id + "\n")
        os.replace(staged, self._dir / CURRENT)
        _fsync_dir(self._dir)
        log.info("backup key rotated: new backups are wrapped with key %s", key_id)
        return key_id

    def _prepare_dir(self) -> None:
        self._dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        info = self._dir.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise PermanentError(f"{self._dir} must be a directory owned by the control plane's user")
        if stat.S_IMODE(info.st_mode) != DIR_MODE:
            self._dir.chmod(DIR_MODE)

    def _create_first(self) -> None:
        """The first key, made current unless another process made its own current first (then ours goes)."""
        key_id = self._new_key_file()
        staged = self._dir / f".{CURRENT}-{secrets.token_hex(4)}"
        _write_new(staged, key_id + "\n")
        try:
            os.link(staged, self._dir / CURRENT)
        except FileExistsError:
            (self._dir / key_id).unlink()
        else:
            log.info("backup key %s created in %s: escrow it (docs/backups.md)", key_id, self._dir)
        finally:
            staged.unlink()
        _fsync_dir(self._dir)

    def _new_key_file(self) -> str:
        key_id = _new_key_id()
        _write_new(self._dir / key_id, base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode() + "\n")
        return key_id

    def _read_key(self, key_id: str) -> bytes:
        if key_id not in self._keys:
            path = self._dir / key_id
            try:
                key = base64.b64decode(self._read_small(path).strip(), validate=True)
            except binascii.Error:
                key = b""
            if len(key) != KEY_BYTES:
                raise PermanentError(f"backup key file {path} does not hold a {KEY_BYTES}-byte key in base64")
            self._keys[key_id] = key
        return self._keys[key_id]

    def _read_small(self, path: Path) -> str:
        """A key-directory file, never through a symlink; a loose mode is tightened (the file is ours)."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                raise PermanentError(f"{path} must be a regular file owned by the control plane's user")
            if stat.S_IMODE(info.st_mode) & 0o077:
                log.warning("%s was readable by others: its mode is now 0600", path)
                with contextlib.suppress(OSError):
                    os.fchmod(fd, FILE_MODE)
            return os.read(fd, _MAX_KEY_FILE).decode("ascii", "replace")
        finally:
            os.close(fd)
