"""How the local runtime starts a command as an instance's user: `setpriv`, and for servers a gated launcher.

`subprocess.Popen(user=..., group=...)` has to `fork()` the whole control plane (CPython uses `vfork()`
only when no uid or gid change is asked), which costs several milliseconds in a process of a hundred MB
or more. Instead the command is wrapped in `setpriv` (util-linux), spawned as root with `vfork()`, which
drops to the instance's uid and gid with no supplementary groups (what `Popen(user, group,
extra_groups=[])` did), sets no_new_privs (no setuid or file-capability binary can raise the privileges
of the instance's processes again) and execs the command. Init commands run like that (`user_argv`).

A server goes through a launcher shell first (`server_argv`), still root, whose standard input is the
read end of a pipe held by the runtime:

    /bin/sh -c '<join each cgroup>; <wait for "go">; exec "$@" </dev/null' reddwarf-launch \
        <cgroup.procs>... -- setpriv --reuid=<uid> --regid=<gid> --clear-groups --no-new-privs -- <argv...>

1. It writes its own pid into every `cgroup.procs` it is given (exit 126 if one cannot be joined), so
   the server and everything it ever forks are inside the instance's cgroups from their first
   instruction. On cgroup v1 a move waits for an RCU grace period (milliseconds); it overlaps with the
   runtime's own work before the "go".
2. It waits for the line "go" on standard input, which the runtime writes only once the pidfile naming
   this pid is durable. If the runtime dies or gives up first, the shell reads end-of-file and exits 125
   without running anything: a server can never run unrecorded.
3. It execs `setpriv`, which execs the server: one pid all along (the pid that was recorded).

Nothing in the shell text depends on the command: paths and argv travel as positional parameters.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from reddwarf.domain.errors import PermanentError

SHELL: Final = "/bin/sh"
GO: Final = b"go\n"
JOIN_FAILED: Final = 126
NOT_RELEASED: Final = 125
# "$1".."--" are cgroup.procs files; after "--" comes the command to exec.
_LAUNCHER: Final = (
    f'while [ "$1" != -- ]; do echo $$ > "$1" || exit {JOIN_FAILED}; shift; done; shift; '
    f'read -r go && [ "$go" = go ] || exit {NOT_RELEASED}; '
    'exec "$@" </dev/null'
)


def find_setpriv(path: str) -> str:
    """The absolute path of `setpriv` on `path` (PermanentError when util-linux's setpriv is missing)."""
    found = shutil.which("setpriv", path=path) or shutil.which("setpriv", path="/usr/bin:/bin")
    if found is None:
        raise PermanentError("setpriv (util-linux) is needed to start instance processes and was not found")
    return found


def user_argv(setpriv: str, uid: int, gid: int, argv: Sequence[str], groups: Sequence[int] = ()) -> list[str]:
    """The argv that runs `argv` as uid/gid with no supplementary groups but `groups` (a replication set's,
    `peers`) and no way to gain privileges again (no_new_privs: setuid and file-capability binaries run
    without their privileges)."""
    if uid == 0 or gid == 0 or 0 in groups:
        raise PermanentError("refusing to start an instance command as root")
    supplementary = f"--groups={','.join(str(g) for g in groups)}" if groups else "--clear-groups"
    return [setpriv, f"--reuid={uid}", f"--regid={gid}", supplementary, "--no-new-privs", "--", *argv]


def server_argv(
    setpriv: str, uid: int, gid: int, argv: Sequence[str], cgroup_procs: Sequence[Path], groups: Sequence[int] = ()
) -> list[str]:
    """The launcher argv: join every cgroup of `cgroup_procs`, wait for `GO` on stdin, then run `argv` as uid/gid."""
    dropped = user_argv(setpriv, uid, gid, argv, groups)
    return [SHELL, "-c", _LAUNCHER, "reddwarf-launch", *(str(p) for p in cgroup_procs), "--", *dropped]


def require_executable(program: str, path: str) -> None:
    """PermanentError unless `program` resolves on `path` (the wrapper would only exit 127 later)."""
    if shutil.which(program, path=path) is None:
        raise PermanentError(f"cannot start {program}: not found or not executable on {path}")
