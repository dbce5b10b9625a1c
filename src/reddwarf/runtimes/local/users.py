"""OS users of the local runtime: one unprivileged system user (and group) per instance.

Users are created with `useradd --system --no-create-home --shell /usr/sbin/nologin --user-group` and
carry a GECOS comment naming the instance, so the runtime never adopts (or deletes) a user it did not make.
"""

from __future__ import annotations

import grp
import logging
import pwd
import subprocess
from dataclasses import dataclass

from reddwarf import fencing
from reddwarf.domain.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)

_LOCKED = (10,)  # useradd/userdel: cannot lock /etc/passwd (another tool holds it); retry
_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class OsUser:
    name: str
    uid: int
    gid: int


def comment_for(instance_id: str) -> str:
    return f"reddwarf instance {instance_id}"


def lookup(name: str) -> OsUser | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return OsUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def require(name: str) -> OsUser:
    """The instance's user, or PermanentError when `prepare()` has not created it."""
    user = lookup(name)
    if user is None:
        raise PermanentError(f"OS user {name} does not exist: the instance was not prepared")
    return user


def run_account_tool(argv: list[str], what: str) -> None:
    """Run useradd, userdel, groupadd or groupdel (fenced); a locked account database is a TemporaryError."""
    try:
        done = fencing.run(argv, timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise TemporaryError(f"{what} timed out", delay=5.0) from None
    if done.returncode in _LOCKED:
        raise TemporaryError(f"{what}: account database locked, retrying", delay=1.0)
    if done.returncode != 0:
        raise PermanentError(f"{what} failed (exit status {done.returncode})", details=done.stderr[-2000:])


def ensure(name: str, instance_id: str, home: str) -> OsUser:
    """Create the instance's user unless it exists; refuse a same-named user that is not ours."""
    existing = lookup(name)
    if existing is None:
        run_account_tool(
            [
                "useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group",
                "--home-dir", home, "--comment", comment_for(instance_id), name,
            ],
            f"useradd {name}",
        )  # fmt: skip
        log.info("created OS user %s for instance %s", name, instance_id)
        existing = require(name)
    owner = pwd.getpwnam(name).pw_gecos
    if owner != comment_for(instance_id):
        raise PermanentError(f"OS user {name} exists but does not belong to instance {instance_id}")
    if existing.uid == 0 or existing.gid == 0:
        raise PermanentError(f"OS user {name} is privileged; refusing to use it")
    return existing


def remove(name: str, instance_id: str) -> None:
    """Delete the instance's user and its group; a no-op when already gone. Never deletes a foreign user."""
    existing = lookup(name)
    if existing is not None:
        if pwd.getpwnam(name).pw_gecos != comment_for(instance_id):
            raise PermanentError(f"OS user {name} does not belong to instance {instance_id}; not deleting it")
        run_account_tool(["userdel", name], f"userdel {name}")
        log.info("deleted OS user %s of instance %s", name, instance_id)
    try:
        grp.getgrnam(name)
    except KeyError:
        return
    run_account_tool(["groupdel", name], f"groupdel {name}")
