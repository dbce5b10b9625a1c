"""The members of a replication set reach each other's servers over their unix sockets, and nobody else does.

Each set has an OS group of its own (`<user prefix>set-<12 hex digits of the set id>`, no members in
/etc/group). A member's socket directory is given to that group with mode 0710 (its owner, the instance's
user, keeps it; the group may only pass through to the socket), and every process of a member's server and
init runs with the group as its one supplementary group (`launch.user_argv`). Servers check at the other end
who connected (PostgreSQL's `peer` authentication, `SO_PEERCRED`), so passing the directory grants nothing by
itself. A single instance's socket directory stays 0700.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import stat
from pathlib import Path

from reddwarf.domain.errors import TemporaryError
from reddwarf.runtimes.local import users
from reddwarf.runtimes.local.paths import instance_key
from reddwarf.runtimes.local.settings import LocalRuntimeSettings

log = logging.getLogger(__name__)

_GROUP_MODE = 0o710
_OWNER_MODE = 0o700


def group_name(settings: LocalRuntimeSettings, set_id: str) -> str:
    return f"{settings.user_prefix}set-{instance_key(set_id)}"


def gid_of(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def ensure_group(settings: LocalRuntimeSettings, set_id: str) -> int:
    """The gid of the set's group, created if missing."""
    name = group_name(settings, set_id)
    gid = gid_of(name)
    if gid is None:
        users.run_account_tool(["groupadd", "--system", name], f"groupadd {name}")
        gid = gid_of(name)
        if gid is None:
            raise TemporaryError(f"group {name} was added but cannot be found yet")
        log.info("created group %s for replication set %s", name, set_id)
    return gid


def remove_group(settings: LocalRuntimeSettings, set_id: str) -> bool:
    """Delete the set's group unless a process still carries it (a member not stopped yet, a detached
    server that keeps it until its next start): its gid must never be handed to another group while a process
    holds it, or that process would pass the new group's socket directories. True when it is gone."""
    return _remove(group_name(settings, set_id))


def _remove(name: str) -> bool:
    gid = gid_of(name)
    if gid is None:
        return True
    if gid_in_use(gid):
        log.info("group %s is still carried by a process: kept (the runtime's upkeep removes it later)", name)
        return False
    users.run_account_tool(["groupdel", name], f"groupdel {name}")
    log.info("removed group %s", name)
    return True


def gid_in_use(gid: int, proc: Path = Path("/proc")) -> bool:
    """Whether any process has `gid` as a supplementary (or real) group (one read of each /proc/<pid>/status)."""
    wanted = str(gid)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "status").read_text()
        except OSError:
            continue  # gone meanwhile
        lines = text.splitlines()
        if any(line.startswith("State:") and "Z" in line.split()[1:2] for line in lines):
            continue  # a zombie opens nothing (and one whose parent never reaps it would hold the gid forever)
        for line in lines:
            if line.startswith(("Groups:", "Gid:")) and wanted in line.split()[1:]:
                return True
    return False


def sweep_groups(settings: LocalRuntimeSettings, live_keys: set[str]) -> int:
    """Remove the set groups of this runtime whose founding instance is gone and that no process carries
    (kept earlier by `remove_group`); the number removed."""
    prefix = f"{settings.user_prefix}set-"
    removed = 0
    for group in grp.getgrall():
        name = group.gr_name
        if name.startswith(prefix) and name[len(prefix):] not in live_keys and _remove(name):
            removed += 1
    return removed


def open_to(socket_dir: Path, gid: int | None, owner_gid: int) -> None:
    """Give `socket_dir` to the set's group (0710), or (None) back to its owner alone (0700). The directory is
    opened without following a link (its parent is root's: nobody else can put one there)."""
    try:
        fd = os.open(socket_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        info = os.fstat(fd)
        want_gid, mode = (owner_gid, _OWNER_MODE) if gid is None else (gid, _GROUP_MODE)
        if info.st_gid != want_gid:
            os.fchown(fd, -1, want_gid)
        if stat.S_IMODE(info.st_mode) != mode:
            os.fchmod(fd, mode)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
