"""The workload spec: the one language engines and runtimes share.

An engine turns an instance spec into a `WorkloadSpec` (what to run, with which files); a runtime
turns a `WorkloadSpec` into running processes or pods (where and how). The reconciler composes them:
`runtime.placement(...)` -> `engine.workload(..., placement)` -> `runtime.start(placement, workload)`.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Resources:
    """What the flavor and volume grant one instance."""

    memory_mb: int
    vcpus: int
    volume_gb: int


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an instance lives, decided by the runtime before the engine renders anything.

    Every path is absolute and owned by `os_user`; `socket_dir` is short enough for a unix socket path
    (under 107 bytes with the engine's socket file name). `scratch_dir` is a private directory on the
    instance's volume (its temp directory), where a restore stages what it extracts.
    """

    instance_id: str
    os_user: str
    address: str
    port: int
    data_dir: str
    config_dir: str
    log_dir: str
    run_dir: str
    socket_dir: str
    scratch_dir: str


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A file the runtime writes for the engine. `secret` files are 0600 and removed once init has run.
    `fresh` files are made anew at each render (a certificate issued for this start): what a server was built
    from does not include them (the warm pool's fingerprint)."""

    path: str
    content: str = field(repr=False)  # a secret file's content must not reach a log through a repr
    mode: int = 0o600
    secret: bool = False
    fresh: bool = False


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A command run as the instance's OS user. Secrets never go in `argv`: use a secret FileSpec."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    timeout: float = 120.0


WORK_DIR = "{work}"


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool run for one operation on an instance (a backup, a restore) with its stdin and stdout piped to
    the control plane (`Runtime.open_tool`).

    `as_instance`: run as the instance's OS user (anything that reads or writes the instance's files), or,
    False, as the control plane: only a client of the server's own unix socket that touches no file of the
    instance (`pg_basebackup` to stdout). `{work}` in `argv` and in `env` values is replaced by a private
    directory of this run (0700, owned by whoever runs the tool) that holds `files` (written before the tool
    starts; secret ones are how a password reaches it, never argv) and whatever the tool writes there;
    `collect` names files in it read back when the tool has exited (at most 16 MiB each). The directory is
    removed afterwards. `stdin`: the caller feeds the tool's stdin (else it is /dev/null)."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    files: tuple[FileSpec, ...] = ()
    as_instance: bool = True
    stdin: bool = False
    collect: tuple[str, ...] = ()
    description: str = ""
    # The replication set whose members' servers the tool reaches (`WorkloadSpec.peer_group`; as_instance only).
    peer_group: str | None = None


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """What to run for one instance.

    `init_files` are written before `init` runs (once, guarded by a marker the runtime keeps); `files` are
    (re)written before every start; `server` is the long-running process, stopped with `stop_signal`.
    """

    instance_id: str
    init: tuple[CommandSpec, ...]
    server: CommandSpec
    resources: Resources
    init_files: tuple[FileSpec, ...] = ()
    files: tuple[FileSpec, ...] = ()
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 30.0
    labels: tuple[tuple[str, str], ...] = field(default=())
    # The replication set the server is a member of (None: a single instance): the runtime lets the set's
    # members, and only them, reach each other's servers locally (`init` and `server` alike).
    peer_group: str | None = None


# A volume with less room left than this share of it, or than `VOLUME_FULL_MIN_FREE` bytes, is full.
VOLUME_FULL_MARGIN = 0.02
VOLUME_FULL_MIN_FREE = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProcessObservation:
    """What the runtime sees of an instance's server right now. `stopped`: running, but suspended (SIGSTOP)
    so that it answers nothing; a runtime that cannot tell says False and the probe's timeout finds it."""

    running: bool
    stopped: bool = False
    pid: int | None = None
    started_at: float | None = None
    exit_reason: str = ""
    volume_used_bytes: int | None = None
    volume_size_bytes: int | None = None

    @property
    def volume_full(self) -> bool:
        """Is its volume (as good as) full: less room left than `VOLUME_FULL_MARGIN` of it, or than
        `VOLUME_FULL_MIN_FREE`? Its server then cannot write its log: PostgreSQL stops (and cannot start again),
        MariaDB and Redis refuse writes. False when not known."""
        used, size = self.volume_used_bytes, self.volume_size_bytes
        if used is None or size is None or size <= 0:
            return False
        return size - used < max(VOLUME_FULL_MIN_FREE, int(size * VOLUME_FULL_MARGIN))

    @property
    def volume_roomy(self) -> bool:
        """Has a volume once full room again: twice what `volume_full` asks (no flapping at the threshold)."""
        used, size = self.volume_used_bytes, self.volume_size_bytes
        if used is None or size is None or size <= 0:
            return True
        return size - used >= 2 * max(VOLUME_FULL_MIN_FREE, int(size * VOLUME_FULL_MARGIN))
