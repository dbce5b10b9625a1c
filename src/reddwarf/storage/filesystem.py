"""The `filesystem` backup target: objects are files under one root directory of the control plane.

The root defaults to `<state_dir>/control/backups`, inside the control plane's 0700 directory: no instance's
OS user can list or read it. Everything below it is created by the control plane, directories 0700 and
files 0600, and opened without following symlinks.

A write goes to a temporary file in the object's own directory (`naming.TEMPORARY_MARK` in its name), is
fsynced, and renamed to the object's name on `commit()` (then the directory is fsynced): a crash at any
point leaves at most a temporary, which `keys` and `read` never show and `delete_prefix` removes. A writer
whose temporary was removed under it (a stale writer after `delete_prefix`) fails its commit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from reddwarf.domain.errors import PermanentError
from reddwarf.storage.base import ArtifactMissing, Storage
from reddwarf.storage.naming import TEMPORARY_MARK, check_key, check_prefix

DIR_MODE = 0o700
FILE_MODE = 0o600
_NAME_MAX = 255
_WRITEBACK_BYTES = 16 << 20
_OPEN_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


@contextlib.contextmanager
def _os_errors(action: str, where: Path) -> Iterator[None]:
    """OSErrors of the backup directory as PermanentError saying what failed where, in words."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise PermanentError(f"no space left on the backup storage while {action} {where}") from exc
        raise PermanentError(f"backup storage failed while {action} {where}: {exc.strerror or exc}") from exc


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class FilesystemStorage:
    """Objects under `root` (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        if not root.is_absolute():
            raise ValueError(f"the backup directory must be an absolute path, not {root}")
        self._root = root
        self._root_ready = False

    @property
    def name(self) -> str:
        return "filesystem"

    @property
    def root(self) -> Path:
        return self._root

    def location(self, key: str) -> str:
        return self._path(key).as_uri()

    def open_write(self, key: str) -> _FileWriter:
        path = self._path(key)
        self._make_dirs(path.parent)
        return _FileWriter(path)

    def read(self, key: str, piece: int = 1 << 20) -> Iterator[bytes]:
        path = self._path(key)
        fd = self._open_read(path)
        try:
            while True:
                with _os_errors("reading", path):
                    data = os.read(fd, piece)
                if not data:
                    return
                yield data
        finally:
            os.close(fd)

    def put(self, key: str, data: bytes) -> None:
        writer = self.open_write(key)
        try:
            writer.write(data)
            writer.commit()
        finally:
            writer.abort()

    def get(self, key: str) -> bytes:
        return b"".join(self.read(key))

    def size(self, key: str) -> int:
        path = self._path(key)
        try:
            info = path.lstat()
        except FileNotFoundError:
            raise ArtifactMissing(f"backup object {path.as_uri()} is missing") from None
        if not stat.S_ISREG(info.st_mode):
            raise PermanentError(f"backup object {path.as_uri()} is not a regular file")
        return info.st_size

    def keys(self, prefix: str) -> list[str]:
        check_prefix(prefix, allow_empty=True)
        start = self._root / prefix if prefix else self._root
        found: list[str] = []
        if not start.is_dir():
            return found
        with _os_errors("listing", start):
            for directory, _dirs, files in os.walk(start):
                relative = Path(directory).relative_to(self._root)
                for name in files:
                    if not name.startswith(TEMPORARY_MARK):
                        found.append((relative / name).as_posix())
        return sorted(found)

    def delete(self, key: str) -> None:
        path = self._path(key)
        with _os_errors("deleting", path), contextlib.suppress(FileNotFoundError):
            path.unlink()

    def delete_prefix(self, prefix: str) -> int:
        """Removes the prefix's directory: objects and the temporaries of writers that never committed."""
        check_prefix(prefix, allow_empty=False)
        start = self._root / prefix
        if not start.is_dir() or start.is_symlink():
            return 0
        with _os_errors("deleting", start):
            count = sum(len(files) for _dir, _dirs, files in os.walk(start))
            shutil.rmtree(start)
        return count

    def _path(self, key: str) -> Path:
        return self._root / check_key(key)

    def _open_read(self, path: Path) -> int:
        try:
            fd = os.open(path, _OPEN_READ)
        except FileNotFoundError:
            raise ArtifactMissing(f"backup object {path.as_uri()} is missing") from None
        except OSError as exc:
            raise PermanentError(f"backup object {path.as_uri()} cannot be read: {exc.strerror or exc}") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise PermanentError(f"backup object {path.as_uri()} is not a regular file")
        return fd

    def _make_dirs(self, directory: Path) -> None:
        """Creates `directory` and its parents below the root (0700 each), refusing anything but directories."""
        if not self._root_ready:
            with _os_errors("creating", self._root):
                self._root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
                if self._root.lstat().st_uid == os.geteuid():
                    self._root.chmod(DIR_MODE)
            self._root_ready = True
        current = self._root
        for part in directory.relative_to(self._root).parts:
            current = current / part
            with _os_errors("creating", current):
                with contextlib.suppress(FileExistsError):
                    current.mkdir(mode=DIR_MODE)
                if not stat.S_ISDIR(current.lstat().st_mode):
                    raise PermanentError(f"backup storage: {current} is not a directory")


class _FileWriter:
    """One object being written to a temporary beside it (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        token = secrets.token_hex(8)
        stem = f"{TEMPORARY_MARK}{token}-"
        self._temporary = path.with_name(stem + path.name[: _NAME_MAX - len(stem)])
        with _os_errors("creating", self._temporary):
            self._fd: int | None = os.open(self._temporary, _OPEN_WRITE, FILE_MODE)
            os.fchmod(self._fd, FILE_MODE)
        self._committed = False
        self._written = self._flushed = self._dropped = 0

    def write(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError(f"write to {self._path} after commit or abort")
        with _os_errors("writing", self._temporary):
            _write_all(self._fd, data)
            self._written += len(data)
            if self._written - self._flushed >= _WRITEBACK_BYTES:
                # Start writing back what is dirty (asynchronously) and drop what was written back before: the
                # commit's fsync then waits for the tail only, and a backup does not evict the databases'
                # own pages from the page cache.
                os.posix_fadvise(self._fd, self._dropped, 0, os.POSIX_FADV_DONTNEED)
                self._dropped, self._flushed = self._flushed, self._written

    def commit(self) -> None:
        if self._fd is None:
            raise ValueError(f"commit of {self._path} after commit or abort")
        fd, self._fd = self._fd, None
        with _os_errors("committing", self._path):
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(self._temporary, self._path)
            self._committed = True
            directory = os.open(self._path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def abort(self) -> None:
        """Removes the temporary; after a commit, nothing (the object stays)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        if not self._committed:
            with _os_errors("removing", self._temporary), contextlib.suppress(FileNotFoundError):
                self._temporary.unlink()


def _conforms(storage: FilesystemStorage) -> Storage:
    """mypy checks here that FilesystemStorage is a `Storage`."""
    return storage
