"""Volumes of the local runtime: a loop-mounted ext4 image per instance, so `volume_gb` is a real limit.

The image is a sparse file (`ftruncate`), formatted with `mkfs.ext4 -q -F -m 0` under a temporary name and
renamed only once formatted, so a crash never leaves a half-made image under the final name. It is mounted
with `mount -o loop,nosuid,nodev,noinit_itable` (no background inode-table zeroing competing with the
engine's first fsyncs) and grown online (`losetup -c`, `resize2fs`). Without loop devices the
volume is a plain directory and usage is counted file by file.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from reddwarf import fencing
from reddwarf.domain.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)

GIB = 1024**3
_TOOLS = ("mkfs.ext4", "e2fsck", "losetup", "mount", "umount", "resize2fs")
_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class Usage:
    used_bytes: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class MountEntry:
    source: str
    target: str
    fstype: str


def _unescape(field: str) -> str:
    r"""Mount fields escape space, tab, newline and backslash as octal (`\040`)."""
    if "\\" not in field:
        return field  # the usual case: nothing to decode, character by character
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """The mounts in the text of /proc/self/mountinfo."""
    entries = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        left_fields, right_fields = left.split(), right.split()
        entries.append(
            MountEntry(source=_unescape(right_fields[1]), target=_unescape(left_fields[4]), fstype=right_fields[0])
        )
    return entries


def mount_at(target: Path) -> MountEntry | None:
    """The (last) mount whose mount point is `target`, or None."""
    found = None
    for entry in parse_mountinfo(Path("/proc/self/mountinfo").read_text()):
        if entry.target == str(target):
            found = entry
    return found


def is_mounted(target: Path) -> bool:
    """Whether a filesystem is mounted at `target` (a directory the runtime made in a root-owned one): its
    device differs from its parent's. Two stats, for the frequent checks; `mount_at` reads the whole mount
    table, which holds every instance's volume."""
    try:
        return os.stat(target).st_dev != os.stat(target.parent).st_dev
    except FileNotFoundError:
        return False


def loop_support() -> tuple[bool, str]:
    """Can this host loop-mount ext4 images? (available, reason)."""
    if os.geteuid() != 0:
        return False, "loop mounts need root"
    if not Path("/dev/loop-control").exists():
        return False, "no /dev/loop-control (loop module missing or not exposed)"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return False, f"missing tools: {', '.join(missing)}"
    return True, "loop-mounted ext4 images (sparse, grown online with resize2fs)"


def run_tool(argv: list[str], what: str, timeout: float = _TIMEOUT) -> str:
    """Run a volume tool in the current fence; its stdout, or TemporaryError naming `what` and its stderr."""
    try:
        done = fencing.run(argv, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TemporaryError(f"{what} timed out", delay=5.0) from None
    if done.returncode != 0:
        raise TemporaryError(f"{what} failed (exit status {done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def _loop_device(image: Path) -> str | None:
    out = run_tool(["losetup", "--associated", str(image), "--noheadings", "--output", "NAME"], "losetup")
    lines = out.split()
    return lines[0] if lines else None


def _direct_io(image: Path) -> None:
    """Let the volume's loop device write to its image with direct I/O: the image's pages are not cached a
    second time under the volume's own page cache, and a synchronous write (a commit) is not copied through
    it. Measured with 8 KiB O_DSYNC writes: 8-9 MB/s without, 11-12 MB/s with, on an image on the host's
    ext4; 4-6 MB/s without and 9-10 MB/s with, on an image in the copy-on-write pool (docs/branches.md).
    A backing filesystem without O_DIRECT keeps buffered I/O: slower, not wrong."""
    device = _loop_device(image)
    if device is None:
        return
    try:
        run_tool(["losetup", "--direct-io=on", device], "losetup --direct-io")
    except TemporaryError as exc:
        log.warning("volume %s keeps buffered I/O: %s", image, exc.message)


def ensure(image: Path, mountpoint: Path, size_gb: int) -> None:
    """Make `mountpoint` an ext4 filesystem of `size_gb` backed by `image`: create, mount or grow."""
    size = size_gb * GIB
    mountpoint.mkdir(mode=0o755, exist_ok=True)
    if not image.exists():
        temp = image.with_name(image.name + ".new")
        temp.unlink(missing_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, size)  # sparse: no block is written
        finally:
            os.close(fd)
        run_tool(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "root_owner=0:0", str(temp)], "mkfs.ext4")
        temp.rename(image)
        log.info("created %d GiB volume image %s", size_gb, image)
    entry = mount_at(mountpoint)
    if entry is None:
        if any(mountpoint.iterdir()):
            raise PermanentError(f"volume mount point {mountpoint} is not empty; refusing to mount over it")
        run_tool(["mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noinit_itable", str(image), str(mountpoint)], "mount")
        log.info("mounted volume %s at %s", image, mountpoint)
        _direct_io(image)
    elif entry.fstype != "ext4":
        raise PermanentError(f"{mountpoint} holds a {entry.fstype} mount, not the instance volume")
    os.chmod(mountpoint, 0o755)  # noqa: S103 - root-owned; users must traverse to their 0700 data dir
    current = image.stat().st_size
    if current < size or _growing(image).exists():
        grow(image, mountpoint, size)
    elif current > size:
        log.warning("volume %s is %d bytes, more than the %d asked: shrinking is not supported", image, current, size)


def grow(image: Path, mountpoint: Path, size: int) -> None:
    """Grow a mounted volume to `size` bytes: online, or (without CAP_SYS_RESOURCE) unmounted if idle."""
    device = _loop_device(image)
    if device is None:
        raise TemporaryError(f"volume {image} is not attached to a loop device")
    _growing(image).touch(mode=0o600)  # a crash after the truncate must still end in a resize
    with image.open("r+b") as handle:
        handle.truncate(max(size, image.stat().st_size))
    run_tool(["losetup", "--set-capacity", device], "losetup --set-capacity")
    try:
        run_tool(["resize2fs", device], "resize2fs")
    except TemporaryError:
        log.warning("online resize of %s refused; growing it unmounted", image)
        try:
            run_tool(["umount", str(mountpoint)], "umount")
        except TemporaryError:
            raise TemporaryError(
                f"volume at {mountpoint} cannot grow online on this host and is in use: stop the instance",
                delay=10.0,
            ) from None
        run_tool(["e2fsck", "-f", "-p", str(image)], "e2fsck")
        run_tool(["resize2fs", str(image)], "resize2fs")
        run_tool(["mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noinit_itable", str(image), str(mountpoint)], "mount")
    _growing(image).unlink(missing_ok=True)
    log.info("grew volume %s at %s to %d bytes", image, mountpoint, size)


def _growing(image: Path) -> Path:
    return image.with_name(image.name + ".growing")


UNMOUNT_PATIENCE = 5.0


def release(image: Path, mountpoint: Path) -> None:
    """Unmount the volume (if mounted) and delete its image. TemporaryError while it is busy."""
    unmount(image, mountpoint)
    image.unlink(missing_ok=True)
    image.with_name(image.name + ".new").unlink(missing_ok=True)
    _growing(image).unlink(missing_ok=True)


def unmount(image: Path, mountpoint: Path) -> None:
    """Unmount the volume (if mounted) and detach its loop device; the image stays. TemporaryError while
    it is busy."""
    if mount_at(mountpoint) is not None:
        # A server just killed may still hold the filesystem for a moment (the kernel releases files queued
        # for asynchronous I/O, MariaDB's io_uring, after the process has gone): try again for a few seconds
        # before the caller's retry.
        deadline = time.monotonic() + UNMOUNT_PATIENCE
        pause = 0.05
        while True:
            try:
                run_tool(["umount", str(mountpoint)], "umount")
                break
            except TemporaryError:
                if time.monotonic() + pause > deadline:
                    raise TemporaryError(f"volume at {mountpoint} is busy; retrying unmount", delay=2.0) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.5)
        log.info("unmounted volume at %s", mountpoint)
    if mount_at(mountpoint) is not None:
        raise TemporaryError(f"volume at {mountpoint} is still mounted", delay=2.0)
    device = _loop_device(image) if image.exists() else None
    if device is not None:
        run_tool(["losetup", "--detach", device], "losetup --detach")


_libc = ctypes.CDLL(None, use_errno=True)


def flush(path: Path) -> None:
    """syncfs(2) of the filesystem holding the directory `path`, in this process (OSError on failure)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"syncfs of {path}: {os.strerror(error)}")
    finally:
        os.close(fd)


def sync_filesystem(path: Path) -> None:
    """Flush every dirty page and inode of the filesystem holding `path` to stable storage (`sync -f`,
    i.e. syncfs(2); on a loop volume that includes flushing the image file)."""
    run_tool(["sync", "--file-system", str(path)], "sync")


def usage(mountpoint: Path) -> Usage:
    """Used and total bytes of the mounted filesystem."""
    stats = os.statvfs(mountpoint)
    return Usage(
        used_bytes=(stats.f_blocks - stats.f_bfree) * stats.f_frsize, size_bytes=stats.f_blocks * stats.f_frsize
    )


def directory_usage(path: Path) -> int:
    """Bytes allocated under `path`, counted file by file (the fallback without a volume)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(path, onerror=None):
        for name in (*dirnames, *filenames):
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total
