"""The copy-on-write volume pool of the local runtime: where instance volume images live, so that a copy of
one (a snapshot, a branch) is a reflink of its image, milliseconds whatever its size, not a copy.

The pool is an XFS filesystem with reflinks (`mkfs.xfs -m reflink=1`) on an image under the state directory
(`<state>/pool.img`, mounted at `<state>/pool`), or a reflink-capable filesystem the operator names
(`REDDWARF_LOCAL_POOL_DIR`: it must exist; Reddwarf makes nothing there but its own directories). Each
instance keeps its ext4 volume image as before (the isolation issue's limits hold unchanged); only where
the image lives moves:

    <pool>/                        0700 root; no instance user reaches it (loop devices are opened by root)
      volumes/<instance-id>.img    each instance's ext4 volume image
      snapshots/<snapshot-id>.img  snapshots: reflinks of a volume image taken while it was frozen
      snapshots/<snapshot-id>.files/  what else the copy needs (`Snapshots.carried`: Redis's ACL file)
      .probe, .probe.clone         the reflink probe, made and removed when the pool is set up

The default pool image is preallocated (`posix_fallocate`), so a host disk that fills up cannot turn into
write errors inside the pool; its size bounds every volume on it (`capacity`). It is made under a temporary
name and renamed once formatted: a crash never leaves a half-made pool under the final name.

Instances made before the pool was on keep their image in their private directory until they are next
started with their volume unmounted (a host reboot, a restart): then the image is copied into the pool
(sparse: only allocated blocks are read) and the old one removed (`LocalRuntime._ensure_volume`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import shutil
import struct
import threading
from pathlib import Path

from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.runtimes.local import volumes

log = logging.getLogger(__name__)

_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")

_TOOLS = ("mkfs.xfs", "cp", "mount")
_MOUNT_OPTIONS = "loop,nosuid,nodev,noexec"
# Used when the operator gives no size: this share of the state directory's free space at creation.
_DEFAULT_SHARE = 0.5
# A whole image copied (moved in, re-based): at ~200 MB/s, an hour is ~700 GB.
_COPY_TIMEOUT = 3600.0
# Room left in the pool beyond such a copy.
_COPY_MARGIN = 1 << 30
# The share of the pool's blocks left out of its capacity, for XFS's own metadata (`Pool.capacity`).
_METADATA_SHARE = 0.04
# The extent size hint of volume images (`_hint_extent_size`).
EXTENT_SIZE_HINT = 1 << 20


def support(pool_dir: Path | None) -> tuple[bool, str]:
    """Can this host keep volumes on a copy-on-write pool? (available, reason). A named pool directory is
    probed when the pool is set up (`Pool.ensure`); here only what making the default pool needs."""
    available, reason = volumes.loop_support()
    if not available:
        return False, reason
    needed = ("cp",) if pool_dir is not None else _TOOLS
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        return False, f"missing tools: {', '.join(missing)} (Debian: xfsprogs)"
    where = f"the filesystem at {pool_dir}" if pool_dir is not None else "an XFS image with reflinks"
    return True, f"volume images on {where}: snapshots and branches are reflinks"


class Pool:
    """The pool of one local runtime (module docstring). `ensure()` sets it up (idempotent, once per
    process unless it went away); every path it hands out is inside it."""

    def __init__(self, state_dir: Path, pool_dir: Path | None, size_gb: int) -> None:
        self._named = pool_dir is not None
        self.root = pool_dir if pool_dir is not None else state_dir / "pool"
        self._image = state_dir / "pool.img"
        self._size_gb = size_gb
        self._lock = threading.Lock()
        self._ready = False

    @property
    def volumes_dir(self) -> Path:
        return self.root / "volumes"

    def volume_image(self, instance_id: str) -> Path:
        return self.volumes_dir / f"{_checked(instance_id)}.img"

    @property
    def snapshots_dir(self) -> Path:
        return self.root / "snapshots"

    def snapshot_image(self, snapshot_id: str) -> Path:
        return self.snapshots_dir / f"{_checked(snapshot_id)}.img"

    def snapshot_files(self, snapshot_id: str) -> Path:
        """The directory of the files a snapshot carries from outside the volume."""
        return self.snapshots_dir / f"{_checked(snapshot_id)}.files"

    def refusal(self) -> str | None:
        """Why this pool could not be set up here, found without making it (None: it can, or it is): a
        named directory must exist and hold reflinks (probed); the default image needs room for 1 GiB."""
        if self._named:
            if not self.root.is_dir():
                return f"{self.root} (REDDWARF_LOCAL_POOL_DIR) is missing"
            try:
                self._probe()
            except (PermanentError, OSError) as exc:
                return str(exc)
            return None
        if self._image.exists():
            return None
        stats = os.statvfs(self._image.parent) if self._image.parent.is_dir() else None
        room = self._size_gb or (0 if stats is None else int(stats.f_bavail * stats.f_frsize * _DEFAULT_SHARE) >> 30)
        if stats is not None and room < 1:
            return f"no room for it beside {self._image} (under 2 GiB free)"
        return None

    def ensure(self) -> None:
        """Make, mount and probe the pool if that is not done yet; PermanentError if it cannot hold reflinks."""
        with self._lock:
            if self._ready and self._mounted_or_named():
                return
            if not self._named:
                self._make_and_mount()
            elif not self.root.is_dir():
                raise PermanentError(f"the volume pool directory {self.root} (REDDWARF_LOCAL_POOL_DIR) is missing")
            os.chmod(self.root, 0o700)
            for directory in (self.volumes_dir, self.snapshots_dir):
                directory.mkdir(mode=0o700, exist_ok=True)
                os.chmod(directory, 0o700)
            _hint_extent_size(self.volumes_dir, EXTENT_SIZE_HINT)
            self._probe()
            self._ready = True

    def _mounted_or_named(self) -> bool:
        return self._named or volumes.is_mounted(self.root)

    def _make_and_mount(self) -> None:
        if not self._image.exists():
            size_gb = self._size_gb or self._default_size_gb()
            temp = self._image.with_name(f"{self._image.name}.new")
            temp.unlink(missing_ok=True)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, size_gb * volumes.GIB)
            except OSError as exc:
                temp.unlink(missing_ok=True)
                raise PermanentError(f"cannot preallocate a {size_gb} GiB pool at {self._image}: {exc}") from None
            finally:
                os.close(fd)
            volumes.run_tool(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", str(temp)], "mkfs.xfs")
            temp.rename(self._image)
            log.info("created a %d GiB copy-on-write volume pool %s", size_gb, self._image)
        self.root.mkdir(mode=0o700, exist_ok=True)
        entry = volumes.mount_at(self.root)
        if entry is None:
            if any(self.root.iterdir()):
                raise PermanentError(f"volume pool mount point {self.root} is not empty; refusing to mount over it")
            volumes.run_tool(["mount", "-t", "xfs", "-o", _MOUNT_OPTIONS, str(self._image), str(self.root)], "mount")
            log.info("mounted the volume pool %s at %s", self._image, self.root)
        elif entry.fstype != "xfs":
            raise PermanentError(f"{self.root} holds a {entry.fstype} mount, not the volume pool")

    def _default_size_gb(self) -> int:
        stats = os.statvfs(self._image.parent)
        size = int(stats.f_bavail * stats.f_frsize * _DEFAULT_SHARE) // volumes.GIB
        if size < 1:
            raise PermanentError(f"no room for a volume pool beside {self._image}: the disk is full")
        return size

    def _probe(self) -> None:
        probe = self.root / ".probe"
        clone = self.root / ".probe.clone"
        probe.write_bytes(b"reddwarf reflink probe\n")
        try:
            self.clone(probe, clone)
        except TemporaryError as exc:
            raise PermanentError(f"the volume pool at {self.root} cannot make reflinks: {exc.message}") from None
        finally:
            probe.unlink(missing_ok=True)
            clone.unlink(missing_ok=True)

    def clone(self, source: Path, target: Path) -> None:
        """A copy-on-write copy of `source` at `target` (both in the pool), made under a temporary name and
        renamed: `target` is whole or absent. TemporaryError if `cp` fails (a filesystem without reflinks)."""
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
        try:
            volumes.run_tool(["cp", "--reflink=always", "--", str(source), str(temp)], "cp --reflink")
        except TemporaryError:
            temp.unlink(missing_ok=True)
            raise
        os.chmod(temp, 0o600)
        temp.rename(target)

    def adopt(self, legacy: Path, instance_id: str) -> Path:
        """Move an instance's image made before the pool was on into it (its volume is not mounted):
        a sparse copy, then the old image removed. Returns the image's place in the pool."""
        target = self.volume_image(instance_id)
        temp = target.with_name(f".{target.name}.moving")
        temp.unlink(missing_ok=True)
        self._require_room(legacy, "moving it in")
        try:
            volumes.run_tool(["cp", "--sparse=always", "--", str(legacy), str(temp)], "cp (into the volume pool)",
                             timeout=_COPY_TIMEOUT)
            os.chmod(temp, 0o600)
            volumes.flush(self.root)
            temp.rename(target)
        finally:
            temp.unlink(missing_ok=True)
        legacy.unlink()
        log.info("moved volume image %s into the volume pool as %s", legacy, target)
        return target

    def rebase(self, limit: int) -> list[str]:
        """Re-base the volume images fragmented past `limit` extents: a snapshot reflinks every extent of
        its image, so its length grows with their number (measured: a 1 GiB image after 8,000 random writes
        following a snapshot had ~15,000 extents and took 0.5 s to reflink, ~53,000 and 3.2 s after 32,000;
        the same image defragmented, 2 extents and 3 ms). `xfs_fsr` copies the image to fresh contiguous
        extents and swaps them in atomically, online: it gives up (changing nothing) when the image is
        written meanwhile, to try again at the next upkeep. An image that shares extents with a snapshot or a
        branch may get blocks of its own for them (every image's whole size is reserved against the pool
        already). Returns the images re-based. Only on XFS (the default pool)."""
        entry = volumes.mount_at(self.root)
        on_xfs = entry is not None and entry.fstype == "xfs"
        if not on_xfs or not self.volumes_dir.is_dir() or shutil.which("xfs_fsr") is None:
            return []
        rebased = []
        for image in sorted(self.volumes_dir.glob("*.img")):
            try:
                before = extent_count(image)
            except OSError:
                continue  # removed meanwhile
            if before <= limit:
                continue
            try:
                self._require_room(image, "re-basing it")
                volumes.run_tool(["xfs_fsr", str(image)], "xfs_fsr", timeout=_COPY_TIMEOUT)
                after = extent_count(image)
            except (TemporaryError, OSError) as exc:
                log.warning("volume image %s (%d extents) not re-based: %s", image.name, before, exc)
                continue
            log.info("volume image %s re-based: %d extents, now %d", image.name, before, after)
            if after < before:
                rebased.append(image.stem)
        return rebased

    def _require_room(self, image: Path, doing: str) -> None:
        """TemporaryError unless the pool has room for a whole copy of `image`'s blocks and a margin: a copy
        must never fill the pool under the tenants' images (sparse ones still allocate as they write)."""
        stats = os.statvfs(self.root)
        free = stats.f_bavail * stats.f_frsize
        needed = image.stat().st_blocks * 512 + _COPY_MARGIN
        if free < needed:
            raise TemporaryError(f"the volume pool has {free >> 20} MiB free, {needed >> 20} MiB needed for "
                                 f"{doing}", delay=60.0)

    def unmount(self) -> None:
        """Unmount a pool this runtime made under its state directory (a throwaway runtime's, when it is
        done); a pool the operator named is left alone."""
        with self._lock:
            self._ready = False
            if not self._named and volumes.is_mounted(self.root):
                volumes.run_tool(["umount", str(self.root)], "umount (the volume pool)")

    def capacity(self) -> int:
        """The pool's size less what XFS keeps for itself: every volume's reservation is admitted against it
        (`services.capacity`), which also bounds what a source and its branches take once their shared
        blocks are rewritten (counting the images' blocks instead would count a shared block once per file).
        Leaving XFS's metadata out keeps a fully reserved pool able to take every reserved block: an empty
        pool keeps 0.75-1.8 % (measured, 64 to 3 GiB) and its refcount trees grow with sharing."""
        stats = os.statvfs(self.root)
        return int(stats.f_blocks * stats.f_frsize * (1 - _METADATA_SHARE))


_FS_IOC_FIEMAP = 0xC020660B  # _IOWR('f', 11, struct fiemap)
_FS_IOC_FSGETXATTR = 0x801C581F  # _IOR('X', 31, struct fsxattr)
_FS_IOC_FSSETXATTR = 0x401C5820  # _IOW('X', 32, struct fsxattr)
_FSXATTR = "=IIIII8x"  # xflags, extsize, nextents, projid, cowextsize, padding
_FS_XFLAG_EXTSZINHERIT = 0x1000


def _hint_extent_size(directory: Path, size: int) -> None:
    """Give the files made in `directory` an extent size hint of `size` bytes (XFS). A loop device writes
    to its image with direct I/O, so without one every first write of a tenant's page is an allocation
    of its own: measured, 65,536 16 KiB pages written in random order into a fresh volume made its image
    63,616 extents and its reflink 1.1 s; with a 1 MiB hint, 396 extents and 12 ms. Images made before
    never get it (XFS refuses a hint on a file with extents, and re-basing keeps the inode): their first
    writes into holes still fragment them, until re-based. XFS also takes the larger of this and its
    copy-on-write hint for the writes that unshare a snapshot's blocks: 1 MiB set aside per rewritten
    region (freed later by XFS), within the capacity's margin. Elsewhere (another filesystem named as the
    pool) the hint is not offered: nothing is changed, and it is logged."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        attributes = bytearray(struct.calcsize(_FSXATTR))
        fcntl.ioctl(fd, _FS_IOC_FSGETXATTR, attributes)
        xflags, extsize, nextents, projid, cowextsize = struct.unpack(_FSXATTR, attributes)
        if xflags & _FS_XFLAG_EXTSZINHERIT and extsize == size:
            return
        struct.pack_into(_FSXATTR, attributes, 0, xflags | _FS_XFLAG_EXTSZINHERIT, size, nextents, projid,
                         cowextsize)
        fcntl.ioctl(fd, _FS_IOC_FSSETXATTR, attributes)
    except OSError as exc:
        log.warning("no extent size hint for the volume pool's images (%s): %s; new volumes will fragment "
                    "their images and snapshots of them slow down", directory, exc.strerror)
    finally:
        os.close(fd)


def extent_count(path: Path) -> int:
    """How many extents `path` is made of (FIEMAP with no room for them: the kernel only counts)."""
    request = bytearray(struct.pack("=QQIIII", 0, 0xFFFFFFFFFFFFFFFF, 0, 0, 0, 0))
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, _FS_IOC_FIEMAP, request)
    finally:
        os.close(fd)
    return int(struct.unpack_from("=QQIIII", request)[3])


def _checked(name: str) -> str:
    """An instance's or a snapshot's id as a file name in the pool: lower-case letters, digits and dashes."""
    if not _ID.fullmatch(name):
        raise PermanentError(f"{name[:100]!r} is not a valid volume or snapshot id")
    return name
