"""Snapshots and branches of instance volumes on the copy-on-write pool (`pool`).

A snapshot is a reflink of the instance's volume image taken while its filesystem is frozen (`freezer`):
crash-consistent, as if the host had lost power at that moment, which every engine recovers from (the
caller first asks the engine to write what it can ahead, e.g. PostgreSQL's CHECKPOINT, so that the freeze
is short and recovery quick). Most dirty pages are flushed before the freeze (syncfs), so the freeze itself
waits only for what was written since.

A branch is a reflink of a snapshot's image as the new instance's volume image. Its files are then given to
the new instance's OS user: `chown -R` without following a symlink (`-h -P`: a link is re-owned itself,
never its target), run by root on the copy mounted at a private directory inside the pool (0700 root),
before it is ever mounted where other users can traverse: no process of the source can open a file of the
copy while it still has the source's owner. A copy holding a symbolic link that could lead off its volume
(absolute, or with a `..`: no engine makes one, a tenant with code execution as the source's user can) is
refused before that, with the links named: the copy's server would otherwise read and write through it.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from reddwarf import fencing
from reddwarf.domain.errors import PermanentError
from reddwarf.runtimes.local import files, freezer, users, volumes
from reddwarf.runtimes.local.paths import InstanceLayout
from reddwarf.runtimes.local.pool import Pool

log = logging.getLogger(__name__)

# Bytes a file carried with a snapshot may have.
CARRIED_LIMIT = 16 << 20
# The directories of a volume that belong to its instance's user (the volume's root stays root's).
_VOLUME_USER_DIRS = ("data", "tmp", "log")


def take(pool: Pool, paths: InstanceLayout, image: Path, snapshot_id: str) -> None:
    """Snapshot the mounted volume of `paths` (whose image is `image`) as `snapshot_id`; nothing if taken."""
    target = pool.snapshot_image(snapshot_id)
    if target.exists():
        return
    if not image.is_relative_to(pool.root):
        raise PermanentError(
            f"the volume of instance {paths.instance_id} is not on the copy-on-write pool yet: it moves there "
            "at its next restart"
        )
    if not volumes.is_mounted(paths.volume_dir):
        raise PermanentError(f"the volume of instance {paths.instance_id} is not mounted")
    started = time.monotonic()
    volumes.flush(paths.volume_dir)
    # Renamed into place only once the holder said the freeze lasted the whole copy: a copy that outlived
    # the deadline was of a live filesystem, and is never kept.
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        with freezer.frozen(paths.volume_dir):
            pool.clone(image, partial)
            fencing.current().reached("frozen")
        partial.rename(target)
    finally:
        partial.unlink(missing_ok=True)
    log.info("instance %s: snapshot %s taken in %.0f ms", paths.instance_id, snapshot_id,
             (time.monotonic() - started) * 1000)


def carry_out(pool: Pool, paths: InstanceLayout, snapshot_id: str, names: tuple[str, ...]) -> None:
    """Keep with the snapshot the files `names` of the instance's config directory that a copy needs (the
    engine's state kept beside its configuration, e.g. Redis's ACL file), read without following a link."""
    kept = pool.snapshot_files(snapshot_id)
    kept.mkdir(mode=0o700, exist_ok=True)
    for name in names:
        try:
            content = files.read_limited(paths.config_dir, paths.config_dir / name, CARRIED_LIMIT)
        except ValueError as exc:
            raise PermanentError(f"instance {paths.instance_id}: {name} cannot be copied: {exc}") from None
        if content is not None:
            files.write_private(kept / name, content.decode("utf-8", "surrogateescape"))


def carry_in(pool: Pool, paths: InstanceLayout, user: users.OsUser, snapshot_id: str) -> None:
    """Write the files kept with the snapshot into the copy's config directory, owned by its user."""
    kept = pool.snapshot_files(snapshot_id)
    if not kept.is_dir():
        return
    for source in kept.iterdir():
        files.write_owned(paths.config_dir, paths.config_dir / source.name, source.read_bytes(), user.uid, user.gid,
                          0o600)


def remove(pool: Pool, snapshot_id: str) -> None:
    pool.snapshot_image(snapshot_id).unlink(missing_ok=True)
    kept = pool.snapshot_files(snapshot_id)
    if kept.is_dir():
        shutil.rmtree(kept)


def clone_into(pool: Pool, snapshot_id: str, image: Path) -> None:
    """The snapshot's image as a new volume image (nothing if that image exists: a re-run)."""
    if image.exists():
        return
    source = pool.snapshot_image(snapshot_id)
    if not source.exists():
        raise PermanentError(f"snapshot {snapshot_id} no longer exists")
    pool.clone(source, image)


def reown_privately(pool: Pool, image: Path, user: users.OsUser) -> None:
    """Give every file of the volume's user directories in `image` to `user`, the image mounted at a
    private directory of the pool for that alone (module docstring). The caller checked that the image is
    not mounted elsewhere (one ext4 mounted twice would be corrupted)."""
    started = time.monotonic()
    work = pool.root / "work" / image.stem
    work.mkdir(mode=0o700, parents=True, exist_ok=True)
    if volumes.is_mounted(work):  # a crashed earlier attempt's
        volumes.run_tool(["umount", str(work)], "umount")
    volumes.run_tool(["mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noexec", str(image), str(work)], "mount")
    try:
        targets = [str(work / name) for name in _VOLUME_USER_DIRS if (work / name).exists()]
        leaving = _link_leaving(work, targets)
        if leaving is not None:
            raise PermanentError(
                f"the volume copied holds symbolic links that lead outside it (e.g. {leaving}): its server "
                "would follow them to files outside its volume, so it is not used. Remove such links on the "
                "instance (a tablespace outside the volume is one) and take the copy again."
            )
        if targets:
            volumes.run_tool(["chown", "-R", "-h", "-P", f"{user.uid}:{user.gid}", "--", *targets], "chown")
    finally:
        volumes.run_tool(["umount", str(work)], "umount")
        work.rmdir()
    log.info("volume %s re-owned in %.0f ms", image.name, (time.monotonic() - started) * 1000)



# Symlink targets that could lead off a volume: absolute, or with a `..` component. In find's -lname
# patterns `*` matches `/` too.
_LEAVING = ("/*", "..", "../*", "*/..", "*/../*")


def _link_leaving(root: Path, tops: list[str]) -> str | None:
    """A symbolic link under `tops` (in `root`) whose target could lead outside `root`, relative to it and
    shortened for a message, or None: an absolute one (in the copy it names the host's file, or the
    source's) or one with a `..` (which, through another link, can climb out). No engine makes either
    (PostgreSQL's tablespaces aside, which tenants cannot make); a tenant with code execution as the
    source's user can, and the copy's server would then read or write through it as the copy's user.
    `find` walks trees of any depth and stops at the first (its output stays small whatever the tenant
    planted)."""
    if not tops:
        return None
    tests: list[str] = []
    for pattern in _LEAVING:
        tests += [*(["-o"] if tests else []), "-lname", pattern]
    out = volumes.run_tool(["find", *tops, "-type", "l", "(", *tests, ")", "-printf", "%p\\0", "-quit"],
                           "find (the copy's symbolic links)")
    found = out.split("\0")[0]
    if not found:
        return None
    shown = os.path.relpath(found, root)
    return repr(shown if len(shown) <= 120 else shown[:60] + "..." + shown[-57:])
