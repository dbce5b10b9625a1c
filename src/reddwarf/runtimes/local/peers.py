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


def remove_group(settings: LocalRuntimeSettings, set_id: str) -> None:
    """Delete the set's group; a no-op when it is gone."""
    name = group_name(settings, set_id)
    if gid_of(name) is not None:
        users.run_account_tool(["groupdel", name], f"groupdel {name}")
        log.info("removed group %s of replication set %s", name, set_id)


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
