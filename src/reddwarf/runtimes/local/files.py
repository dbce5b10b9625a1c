"""Symlink-safe file operations for root writing into directories a tenant's OS user controls.

The instance user owns its 0700 directories, so it may plant a symlink where root is about to write
(`config/postgresql.conf -> /etc/shadow`). Every write here walks from a root-owned anchor with
`O_NOFOLLOW` directory descriptors, creates a fresh temporary file with `O_EXCL | O_NOFOLLOW`, sets owner
and mode on the descriptor, and renames it into place (a rename replaces a symlink, never its target).
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

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _relative_parts(anchor: Path, path: Path) -> tuple[str, ...]:
    try:
        parts = path.relative_to(anchor).parts
    except ValueError:
        raise ValueError(f"{path} is not under {anchor}") from None
    if not parts or any(part in ("..", ".") for part in parts):
        raise ValueError(f"{path} is not a file under {anchor}")
    return parts


@contextlib.contextmanager
def _open_parent(anchor: Path, parts: tuple[str, ...], uid: int, gid: int, create: bool = True) -> Iterator[int]:
    """Open the directory holding `anchor/parts...` without following symlinks, creating missing dirs."""
    fd = os.open(anchor, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o700, dir_fd=fd)
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.fchown(next_fd, uid, gid)
            os.close(fd)
            fd = next_fd
        yield fd
    finally:
        os.close(fd)


def write_owned(anchor: Path, path: Path, content: bytes, uid: int, gid: int, mode: int) -> None:
    """Atomically write `path` (under root-owned-parent `anchor`) owned by uid:gid with `mode`."""
    parts = _relative_parts(anchor, path)
    with _open_parent(anchor, parts, uid, gid) as dir_fd:
        temp = f".{parts[-1]}.{secrets.token_hex(4)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o600, dir_fd=dir_fd)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        os.close(fd)
        os.rename(temp, parts[-1], src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def open_append(anchor: Path, path: Path, uid: int, gid: int) -> int:
    """Open `path` for appending (a log file), owned by uid:gid and 0600; never follows a symlink.

    Returns a raw descriptor the caller closes (e.g. after handing it to a child process).
    """
    parts = _relative_parts(anchor, path)
    with _open_parent(anchor, parts, uid, gid) as dir_fd:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        fd = os.open(parts[-1], flags, 0o600, dir_fd=dir_fd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO planted by the tenant
                raise ValueError(f"{path} is not a regular file")
            os.set_blocking(fd, True)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o600)
        except BaseException:
            os.close(fd)
            raise
        return fd


def remove(anchor: Path, path: Path) -> None:
    """Remove `path` under `anchor` if it exists (unlink never follows the last symlink)."""
    parts = _relative_parts(anchor, path)
    try:
        with _open_parent(anchor, parts, 0, 0, create=False) as dir_fd:
            os.unlink(parts[-1], dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a parent was swapped for a symlink; nothing of ours is there
            return
        raise


def write_private(path: Path, content: str) -> None:
    """Atomically write a root-only (0600) file in a root-owned directory (pidfile, markers)."""
    write_owned(path.parent, path, content.encode(), 0, 0, 0o600)


def make_dir(anchor: Path, path: Path, uid: int, gid: int) -> None:
    """Create the new directory `path` under `anchor` (0700, owned by uid:gid) without following a symlink;
    FileExistsError when something already has its name."""
    parts = _relative_parts(anchor, path)
    with _open_parent(anchor, parts, uid, gid) as dir_fd:
        os.mkdir(parts[-1], 0o700, dir_fd=dir_fd)
        fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=dir_fd)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)


def read_limited(anchor: Path, path: Path, limit: int) -> bytes | None:
    """The content of the regular file `path` under `anchor`, read without following a symlink; None when
    it is missing. ValueError when it is not a regular file or larger than `limit` bytes."""
    parts = _relative_parts(anchor, path)
    try:
        with _open_parent(anchor, parts, 0, 0, create=False) as dir_fd:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path} is not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{path} is larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while piece := os.read(fd, 1 << 16):
            size += len(piece)
            if size > limit:
                raise ValueError(f"{path} is larger than {limit} bytes")
            chunks.append(piece)
        return b"".join(chunks)
    finally:
        os.close(fd)


def remove_tree(anchor: Path, path: Path) -> None:
    """Remove the directory `path` under `anchor` and everything in it, never following a symlink (not in
    its parents either: they are walked from `anchor` with `O_NOFOLLOW`)."""
    parts = _relative_parts(anchor, path)
    try:
        with _open_parent(anchor, parts, 0, 0, create=False) as dir_fd:
            shutil.rmtree(parts[-1], dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return
        raise


def list_files(anchor: Path, directory: Path) -> list[str]:
    """The names of the regular files in `directory` under `anchor` (walked without following a symlink);
    [] when it does not exist."""
    parts = _relative_parts(anchor, directory / "_")
    try:
        with _open_parent(anchor, parts, 0, 0, create=False) as dir_fd, os.scandir(dir_fd) as entries:
            return sorted(entry.name for entry in entries if entry.is_file(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return []
        raise
