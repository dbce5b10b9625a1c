"""The local runtime: each instance is a supervised server process on this host, under its own OS user.

`LocalRuntime` implements `reddwarf.runtimes.base.Runtime`. It composes the modules of this package:
`paths` (layout), `users` (one OS user per instance), `volumes` (loop-mounted ext4 images), `cgroups`
(memory and cpu limits), `processes` (pidfiles, /proc liveness, process groups, reaping) and `addresses`.

Starting a server (see `launch`): a root launcher shell is spawned first; it joins the instance's cgroups
and waits. Meanwhile every process of the instance's user (the uid is the instance's alone) is killed, the
server's files are written and the pidfile naming the launcher's pid is made durable; only then is the
launcher told to go, and it execs `setpriv`, which drops to the instance's uid and gid and execs the
server under that same pid. So the server and everything it forks live inside the cgroup from their first
instruction, and no server ever runs without a pidfile (a crash before the "go" makes the launcher exit).
As a safety net `observe()` still sweeps every process of the user into the cgroup. Init commands run as
the instance's user too (through `setpriv`), outside the cgroup. Nothing runs as root that a tenant can
influence: files are written by root with symlink-safe descriptor walks (see `files`), commands run as
the instance user.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reddwarf import fencing
from reddwarf.domain.endpoints import Route
from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.workload import (
    CommandSpec,
    FileSpec,
    Placement,
    ProcessObservation,
    Resources,
    ToolSpec,
    WorkloadSpec,
)
from reddwarf.runtimes.base import ToolRun
from reddwarf.runtimes.local import addresses, files, launch, peers, processes, snapshots, tools, users, volumes
from reddwarf.runtimes.local.cgroups import Cgroups, Detection, detect
from reddwarf.runtimes.local.endpoints import Endpoints, table_name
from reddwarf.runtimes.local.exits import ExitWatcher
from reddwarf.runtimes.local.paths import InstanceLayout, instance_key, instances_dir, layout
from reddwarf.runtimes.local.pool import Pool
from reddwarf.runtimes.local.pool import support as pool_support
from reddwarf.runtimes.local.settings import LocalRuntimeSettings

log = logging.getLogger(__name__)

_OUTPUT_LINES = 20
# Seconds between two runs of observe()'s slow part for one instance (volume usage, cgroup sweep).
SLOW_OBSERVE_EVERY = 30.0
_MASK = "**********"


class LocalRuntime:
    """Runs database servers as supervised processes on this host (the embedded default runtime)."""

    def __init__(self, settings: LocalRuntimeSettings) -> None:
        self._settings = settings
        self._reaper = processes.Reaper()
        self._cgroups = Cgroups(self._choose_cgroups(), settings.cgroup_root, settings.cgroup_parent)
        self._loop, self._loop_reason = self._choose_volumes()
        self._pool, self._pool_reason = self._choose_pool()
        self._upkeep: threading.Thread | None = None
        self._setpriv = launch.find_setpriv(settings.command_path)
        # Per instance: when observe() last did its slow part (volume usage, the cgroup sweep), and the usage.
        self._slow_lock = threading.Lock()
        self._slow: dict[str, tuple[float, int | None, int | None]] = {}
        self._records: dict[str, tuple[tuple[int, int, int], processes.ServerRecord]] = {}
        self._scan: tuple[float, dict[int, list[int]]] | None = None
        self._layouts: dict[Placement, InstanceLayout] = {}
        # Per instance: the server last seen running and what observe() said of it (see `_still_running`).
        self._last_seen: dict[str, tuple[processes.ServerRecord, ProcessObservation]] = {}
        self._exits = ExitWatcher()
        self._exits.listen(self._server_exited)
        self._endpoints = Endpoints(table_name(f"{settings.user_prefix}{settings.state_dir}"))

    # -- construction: which isolation this host gives --------------------------------------------

    def _choose_cgroups(self) -> Detection:
        wanted = self._settings.use_cgroups
        if wanted == "false":
            return Detection("none", "disabled by REDDWARF_LOCAL_USE_CGROUPS=false")
        found = detect(self._settings.cgroup_root)
        if found.mode == "none" and wanted == "true":
            raise PermanentError(f"REDDWARF_LOCAL_USE_CGROUPS=true but {found.reason}")
        return found

    def _choose_volumes(self) -> tuple[bool, str]:
        wanted = self._settings.use_loop_volumes
        if wanted == "false":
            return False, "disabled by REDDWARF_LOCAL_USE_LOOP_VOLUMES=false"
        available, reason = volumes.loop_support()
        if not available and wanted == "true":
            raise PermanentError(f"REDDWARF_LOCAL_USE_LOOP_VOLUMES=true but {reason}")
        return available, reason

    def _choose_pool(self) -> tuple[Pool | None, str]:
        wanted = self._settings.use_cow_pool
        if wanted == "false":
            return None, "disabled by REDDWARF_LOCAL_USE_COW_POOL=false"
        if not self._loop:
            reason = f"volumes are not loop images ({self._loop_reason})"
        else:
            available, reason = pool_support(self._settings.pool_dir)
            if available:
                settings = self._settings
                pool = Pool(settings.state_dir, settings.pool_dir, settings.pool_gb)
                # auto: a pool that could not be made (no room, no reflinks) means none, said why. It is made
                # at its first use, not here: a command that builds a runtime and exits makes nothing.
                refusal = None if wanted == "true" else pool.refusal()
                if refusal is None:
                    return pool, reason
                reason = f"the copy-on-write pool cannot be set up: {refusal}"
                log.warning("%s; volumes stay plain loop images", reason)
        if wanted == "true":
            raise PermanentError(f"REDDWARF_LOCAL_USE_COW_POOL=true but {reason}")
        return None, reason

    @property
    def name(self) -> str:
        return "local"

    def isolation_report(self) -> dict[str, str]:
        cgroups = self._cgroups.detection
        report = {
            "memory_cpu_limits": cgroups.mode,
            "memory_cpu_limits_detail": cgroups.reason
            if cgroups.mode != "none"
            else f"no limits (engine memory settings only): {cgroups.reason}",
            "volumes": "loop" if self._loop else "directory",
            "volumes_detail": self._loop_reason
            if self._loop
            else f"plain directories, usage accounting only: {self._loop_reason}",
            "volume_pool": "copy-on-write" if self._pool is not None else "none",
            "volume_pool_detail": self._pool_reason,
            "users": "one unprivileged OS user per instance, no new privileges (setpriv --no-new-privs)",
            "pids_limit": f"{self._settings.pids_max} processes and threads per instance"
            if cgroups.mode != "none" and cgroups.pids
            else "none: no pids cgroup controller on this host",
            "temp_dir": "a private directory on each instance's volume (TMPDIR)",
        }
        if self._settings.routable_address is not None:
            low, high = self._settings.port_range
            report["addresses"] = f"{self._settings.routable_address} ports {low}-{high}"
        else:
            report["addresses"] = f"pool {self._settings.address_pool}, engine's standard port"
        return report

    # -- capacity (read-only) ---------------------------------------------------------------------

    def storage_capacity(self) -> int | None:
        """Free bytes of the file system holding the volumes, plus the bytes the volumes already take there
        (sparse images count what they have allocated; plain-directory volumes what their files take)."""
        if self._pool is not None:
            self._pool.ensure()
            # Images made before the pool was on live outside it until they move in: their sizes count
            # beside it, so that their reservations do not take the pool's room.
            legacy = 0
            for image in instances_dir(self._settings).glob("*/private/volume.img"):
                with contextlib.suppress(FileNotFoundError):  # moved in or deleted meanwhile
                    legacy += image.stat().st_size
            return self._pool.capacity() + legacy
        where = instances_dir(self._settings)
        while not where.exists():
            where = where.parent
        stats = os.statvfs(where)
        free = stats.f_bavail * stats.f_frsize
        return free + sum(self._volume_allocation(entry) for entry in self._instance_dirs())

    def _instance_dirs(self) -> list[Path]:
        try:
            return [entry for entry in instances_dir(self._settings).iterdir() if entry.is_dir()]
        except FileNotFoundError:
            return []

    def _instance_keys(self) -> set[str]:
        keys = set()
        for entry in self._instance_dirs():
            with contextlib.suppress(ValueError):
                keys.add(instance_key(entry.name))
        return keys

    def _volume_allocation(self, instance_dir: Path) -> int:
        paths = layout(self._settings, instance_dir.name)
        try:
            if self._loop:
                return self._image(paths).stat().st_blocks * 512
            if volumes.mount_at(paths.volume_dir) is None and paths.volume_dir.is_dir():
                return volumes.directory_usage(paths.volume_dir)
        except (FileNotFoundError, ValueError):
            return 0
        return 0

    # -- placement and addresses (pure / read-only) -----------------------------------------------

    def placement(self, instance_id: str, address: str, port: int) -> Placement:
        return layout(self._settings, instance_id).placement(address, port)

    def address_candidates(self, port: int) -> Iterator[str]:
        """Addresses to try for `port`: the pool's hosts, or the routable address if `port` is in range."""
        routable = self._settings.routable_address
        if routable is None:
            yield from addresses.pool_candidates(self._settings.address_pool)
            return
        low, high = self._settings.port_range
        if low <= port <= high:
            yield str(routable)

    def endpoint_candidates(self, standard_port: int) -> Iterator[tuple[str, int]]:
        """(address, port) pairs to try: pool addresses with `standard_port`, or the routable port range."""
        routable = self._settings.routable_address
        if routable is None:
            for address in addresses.pool_candidates(self._settings.address_pool):
                yield address, standard_port
        else:
            yield from addresses.routable_candidates(routable, self._settings.port_range)

    def bindable(self, address: str, port: int) -> bool:
        return addresses.bindable(address, port)

    # -- prepare ----------------------------------------------------------------------------------

    def _ensure_root_dir(self, path: Path, mode: int) -> None:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
            raise PermanentError(f"{path} must be a directory owned by root")
        if stat.S_IMODE(info.st_mode) != mode:
            path.chmod(mode)

    def _check_traversable(self, path: Path) -> None:
        for ancestor in (path, *path.parents):
            if not os.stat(ancestor).st_mode & stat.S_IXOTH:
                raise PermanentError(
                    f"{ancestor} is not traversable by other users (needs o+x) and instance users live under "
                    "it: choose another REDDWARF_LOCAL_STATE_DIR / REDDWARF_LOCAL_SOCKET_BASE"
                )

    def _ensure_user_dir(self, path: Path, user: users.OsUser) -> None:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode):
            raise PermanentError(f"{path} exists and is not a directory")
        if (info.st_uid, info.st_gid) != (user.uid, user.gid):
            os.chown(path, user.uid, user.gid, follow_symlinks=False)
        if stat.S_IMODE(info.st_mode) != 0o700:
            path.chmod(0o700)

    def prepare(self, placement: Placement, resources: Resources) -> None:
        paths = self._layout(placement)
        for base in (self._settings.state_dir, instances_dir(self._settings), self._settings.effective_socket_base):
            self._ensure_root_dir(base, 0o755)
            self._check_traversable(base)
        self._ensure_root_dir(paths.instance_dir, 0o755)
        self._ensure_root_dir(paths.private_dir, 0o700)
        files.write_private(
            paths.resources_file,
            json.dumps({"memory_mb": resources.memory_mb, "vcpus": resources.vcpus, "volume_gb": resources.volume_gb}),
        )
        # useradd and the volume (mkfs, mount) are independent and each mostly waits on a tool: run the
        # first in a helper thread meanwhile. Both are idempotent, so a failed or interrupted prepare re-runs.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare-user") as pool:
            # In the step's context: its fence kills useradd too when the lease is lost.
            creating = pool.submit(
                contextvars.copy_context().run, users.ensure, paths.os_user, paths.instance_id, str(paths.data_dir)
            )
            self._ensure_volume(paths, resources)
            self._cgroups.ensure(paths.os_user, resources.memory_mb, resources.vcpus, self._settings.pids_max)
            user = creating.result()
        for directory in paths.user_dirs:
            self._ensure_user_dir(directory, user)
        log.info("prepared instance %s (user %s)", paths.instance_id, paths.os_user)

    def _ensure_volume(self, paths: InstanceLayout, resources: Resources) -> None:
        if not self._loop:
            self._ensure_root_dir(paths.volume_dir, 0o755)
            return
        if self._pool is not None:
            self._pool.ensure()
            # An image made before the pool was on moves into it while its volume is not mounted (`pool`).
            if paths.volume_image.exists() and not volumes.is_mounted(paths.volume_dir):
                try:
                    self._pool.adopt(paths.volume_image, paths.instance_id)
                except (TemporaryError, OSError) as exc:  # it starts from where it was; the next start tries again
                    log.warning("instance %s: its volume image stays outside the pool for now: %s",
                                paths.instance_id, exc)
        image = self._image(paths)
        if paths.init_marker.exists() and not image.exists():
            # Never a fresh, empty filesystem under an initialised instance (the pool turned off, an image lost).
            raise PermanentError(f"the volume image of instance {paths.instance_id} is missing ({image})")
        volumes.ensure(image, paths.volume_dir, resources.volume_gb)

    def _image(self, paths: InstanceLayout) -> Path:
        """Where the instance's volume image is: in the pool, unless one made before the pool is still in use."""
        if self._pool is None or paths.volume_image.exists():
            return paths.volume_image
        return self._pool.volume_image(paths.instance_id)

    # -- initialise -------------------------------------------------------------------------------

    def initialise(self, placement: Placement, workload: WorkloadSpec) -> None:
        """Run the engine's init commands into the empty data directory, then write the init marker.

        Fenced (`reddwarf.fencing`): the init commands are the step's children, killed when its lease is
        lost. A worker paused past its lease cannot kill its own, so the holder that took over kills every
        process of the instance's OS user (after the store confirmed its lease) before it wipes the data
        directory: no server runs (checked), so they can only be a stale holder's init commands. The marker
        is the commit: written right after the store confirms the lease, and it names the attempt that
        wrote it."""
        paths = self._layout(placement)
        if paths.init_marker.exists():
            return
        user = users.require(paths.os_user)
        self._require_volume(paths)
        if self._live_record(paths) is not None:
            raise PermanentError(f"instance {paths.instance_id} is running; refusing to initialise it")
        # Not a stale holder's: confirmed in the store before anything of the instance is killed or wiped.
        fencing.current().confirm()
        self._kill_user_processes(paths, user)
        if any(paths.data_dir.iterdir()):
            log.warning("instance %s: wiping a half-initialised data dir before re-running init", paths.instance_id)
            self._wipe_contents(paths.data_dir)
        secrets_in_files = [spec.content for spec in workload.init_files if spec.secret]
        groups = self._peer_groups(paths, user, workload)
        try:
            for spec in workload.init_files:
                self._write_file(paths, spec, user, mode=0o600)
            for command in workload.init:
                self._run_init(paths, user, command, secrets_in_files, groups)
        finally:
            # A failed init must not leave a password file behind either.
            for spec in workload.init_files:
                if spec.secret:
                    files.remove(self._anchor(paths, Path(spec.path)), Path(spec.path))
        if workload.init:
            # What init wrote is on disk before the marker says so (one syncfs: init tools may skip their
            # own per-file fsyncs, e.g. `initdb --no-sync`, which costs several times more on a loop volume).
            volumes.sync_filesystem(paths.data_dir)
        fence = fencing.current()
        fence.confirm()
        files.write_private(paths.init_marker, f"initialised by {fence.tag}\n")
        log.info("initialised instance %s", paths.instance_id)

    def initialised(self, placement: Placement) -> bool:
        return self._layout(placement).init_marker.exists()

    # -- snapshots and branches (the copy-on-write pool: `snapshots`) ------------------------------

    def snapshot_refusal(self, placement: Placement) -> str | None:
        pool = self._pool
        if pool is None:
            return f"no copy-on-write volume pool ({self._pool_reason})"
        if not self._image(self._layout(placement)).is_relative_to(pool.root):
            return "its volume is not on the copy-on-write pool yet: it moves there at its next restart"
        return None

    def snapshot(self, placement: Placement, snapshot_id: str, carried: tuple[str, ...] = ()) -> None:
        """A crash-consistent snapshot of the instance's volume (the server may run), with the files
        `carried` of its config directory; nothing if taken."""
        paths = self._layout(placement)
        pool = self._require_pool()
        pool.ensure()
        if not pool.snapshot_image(snapshot_id).exists():
            snapshots.carry_out(pool, paths, snapshot_id, carried)
        snapshots.take(pool, paths, self._image(paths), snapshot_id)

    def remove_snapshot(self, snapshot_id: str) -> None:
        pool = self._require_pool()
        pool.ensure()
        snapshots.remove(pool, snapshot_id)

    def branch(self, placement: Placement, resources: Resources, snapshot_id: str, workload: WorkloadSpec) -> None:
        """Prepare the instance on a copy of the snapshot instead of an empty volume, give its files to its
        own OS user, run `workload.init` (the engine's fix-ups of a copy, as that user), and write the init
        marker: the commit, as `initialise`'s. A re-run after the marker does nothing."""
        paths = self._layout(placement)
        if paths.init_marker.exists():
            return
        pool = self._require_pool()
        pool.ensure()
        image = pool.volume_image(paths.instance_id)
        snapshots.clone_into(pool, snapshot_id, image)
        if not volumes.is_mounted(paths.volume_dir):
            # Its files are the branch user's before the copy is mounted where other users can traverse.
            owner = users.ensure(paths.os_user, paths.instance_id, str(paths.data_dir))
            try:
                snapshots.reown_privately(pool, image, owner)
            except PermanentError:
                image.unlink(missing_ok=True)  # a copy refused is never kept
                raise
        self.prepare(placement, resources)
        user = users.require(paths.os_user)
        fencing.current().confirm()
        self._kill_user_processes(paths, user)
        snapshots.carry_in(pool, paths, user, snapshot_id)
        for command in workload.init:
            self._run_init(paths, user, command, [])
        volumes.sync_filesystem(paths.data_dir)
        fence = fencing.current()
        fence.confirm()
        files.write_private(paths.init_marker, f"initialised by {fence.tag} from snapshot {snapshot_id}\n")
        log.info("instance %s: branched from snapshot %s", paths.instance_id, snapshot_id)

    def branch_refusal(self) -> str | None:
        return None if self._pool is not None else f"no copy-on-write volume pool ({self._pool_reason})"

    def upkeep(self) -> None:
        """Between operations: re-base volume images fragmented past `rebase_extents` (`Pool.rebase`), so
        that a snapshot's reflink stays milliseconds however the tenant writes. In a thread of its own (a
        re-base copies an image: seconds per GiB), one round at a time; returns at once. Also removes the
        groups of replication sets whose founder is gone once no process carries them (`peers`)."""
        peers.sweep_groups(self._settings, self._instance_keys())
        pool = self._pool
        if pool is None or not volumes.is_mounted(pool.root) or (self._upkeep and self._upkeep.is_alive()):
            return
        self._upkeep = threading.Thread(target=pool.rebase, args=(self._settings.rebase_extents,),
                                        name="volume-rebase", daemon=True)
        self._upkeep.start()

    def release_pool(self) -> None:
        """Unmount the pool this runtime made (a throwaway runtime's, once its instances are destroyed)."""
        if self._pool is not None:
            self._pool.unmount()

    def _require_pool(self) -> Pool:
        if self._pool is None:
            raise PermanentError(f"this host keeps no volumes on a copy-on-write pool: {self._pool_reason}")
        return self._pool

    def _wipe_contents(self, directory: Path) -> None:
        for entry in directory.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def _run_init(
        self, paths: InstanceLayout, user: users.OsUser, command: CommandSpec, hidden: list[str],
        groups: tuple[int, ...] = (),
    ) -> None:
        program = os.path.basename(command.argv[0])
        log.info("instance %s: running init command %s", paths.instance_id, program)
        env = self._environment(paths, command)
        launch.require_executable(command.argv[0], env["PATH"])
        child = subprocess.Popen(
            launch.user_argv(self._setpriv, user.uid, user.gid, command.argv, groups),
            cwd=paths.data_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            umask=0o077,
        )
        try:
            output, _ = fencing.communicate(child, timeout=command.timeout)
        except subprocess.TimeoutExpired as expired:
            self._append_log(paths, user, expired.output or b"")
            raise TemporaryError(
                f"init command {program} of instance {paths.instance_id} timed out after {command.timeout:g}s"
            ) from None
        self._append_log(paths, user, output)
        if child.returncode != 0:
            text = output.decode("utf-8", "replace")
            for secret in hidden:
                for piece in {secret, secret.strip(), *secret.splitlines()}:
                    if len(piece) >= 4:
                        text = text.replace(piece, _MASK)
            tail = "\n".join(text.splitlines()[-_OUTPUT_LINES:])
            raise PermanentError(
                f"init command {program} of instance {paths.instance_id} failed "
                f"({processes.describe_exit(child.returncode)})",
                details=tail,
            )

    def _append_log(self, paths: InstanceLayout, user: users.OsUser, output: bytes) -> None:
        fd = files.open_append(paths.log_dir, paths.init_log, user.uid, user.gid)
        try:
            view = memoryview(output)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    # -- start / observe / stop -------------------------------------------------------------------

    def start(self, placement: Placement, workload: WorkloadSpec) -> None:
        paths = self._layout(placement)
        with self._host_fence(paths):
            if self._fence_marker(paths).exists():
                raise PermanentError(f"instance {paths.instance_id} is fenced on this host: its server does not "
                                     "start until it is let go (`unfence`)")
            self._start(paths, workload)

    def _start(self, paths: InstanceLayout, workload: WorkloadSpec) -> None:
        self._forget_observed(paths.instance_id)  # a new server: sweep it into its cgroups at once
        self._reaper.reap()
        if self._live_record(paths) is not None:
            return
        user = users.require(paths.os_user)
        if workload.init and not paths.init_marker.exists():
            raise PermanentError(f"instance {paths.instance_id} is not initialised; refusing to start it")
        # After a host reboot mounts and cgroups are gone: bring them back before anything runs.
        self._ensure_volume(paths, workload.resources)
        self._cgroups.ensure(
            paths.os_user, workload.resources.memory_mb, workload.resources.vcpus, self._settings.pids_max
        )
        self._require_volume(paths)
        # Instances prepared before the private temp dir existed, or whose logs were outside the volume.
        self._ensure_user_dir(paths.tmp_dir, user)
        self._ensure_user_dir(paths.log_dir, user)
        env = self._environment(paths, workload.server)
        launch.require_executable(workload.server.argv[0], env["PATH"])
        # The launcher joins the cgroups meanwhile (see `launch`) and waits for "go" on this pipe.
        release, held = os.pipe()
        try:
            child = self._spawn_launcher(paths, user, workload, env, release)
        finally:
            os.close(release)
        try:
            stat_now = processes.read_stat(child.pid)
            if stat_now is None:
                raise TemporaryError(f"server of instance {paths.instance_id} exited at once; see {paths.server_log}")
            # Processes of the user left by an older control plane or a tenant: never run two servers. Only
            # while this step's lease holds: a stale holder resumed after a pause must not kill the server
            # that the holder after it started.
            fencing.current().confirm()
            self._kill_user_processes(paths, user)
            for spec in workload.files:
                self._write_file(paths, spec, user, mode=spec.mode)
            processes.write_record(
                paths.pidfile, processes.ServerRecord(pid=child.pid, start_ticks=stat_now.start_ticks, uid=user.uid)
            )
            try:
                os.write(held, launch.GO)
            except BrokenPipeError:
                raise TemporaryError(
                    f"server launcher of instance {paths.instance_id} exited before it could run the server "
                    f"(could it not join its cgroup?); see {paths.server_log}"
                ) from None
        except BaseException:
            # Without its "go" the launcher would exit by itself; do not leave it waiting meanwhile.
            processes.signal_group(child.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=self._settings.kill_timeout)
            self._reaper.reap()
            raise
        finally:
            os.close(held)
        log.info("started server of instance %s as pid %d", paths.instance_id, child.pid)

    def _spawn_launcher(
        self, paths: InstanceLayout, user: users.OsUser, workload: WorkloadSpec, env: dict[str, str], release: int
    ) -> subprocess.Popen[bytes]:
        argv = launch.server_argv(
            self._setpriv, user.uid, user.gid, workload.server.argv, self._cgroups.procs_files(paths.os_user),
            self._peer_groups(paths, user, workload),
        )
        log_fd = files.open_append(paths.log_dir, paths.server_log, user.uid, user.gid)
        try:
            child = subprocess.Popen(
                argv,
                cwd=paths.data_dir,
                env=env,
                stdin=release,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                umask=0o077,
            )
        except OSError as exc:
            raise PermanentError(
                f"cannot start {workload.server.argv[0]} for instance {paths.instance_id}: {exc.strerror}"
            ) from None
        finally:
            os.close(log_fd)
        self._reaper.adopt(child)
        return child

    def _peer_groups(self, paths: InstanceLayout, user: users.OsUser, workload: WorkloadSpec) -> tuple[int, ...]:
        """The supplementary groups of the instance's processes: its replication set's (`peers`), whose
        members may then pass its socket directory too; none for a single instance (its directory 0700)."""
        gid = None if workload.peer_group is None else peers.ensure_group(self._settings, workload.peer_group)
        peers.open_to(paths.socket_dir, gid, user.gid)
        return () if gid is None else (gid,)

    def refresh(self, placement: Placement, workload: WorkloadSpec) -> None:
        """Rewrite the server's `files` and open its socket directory to its set, without a restart (the
        engine then has the running server reload them)."""
        paths = self._layout(placement)
        user = users.require(paths.os_user)
        self._require_volume(paths)
        self._peer_groups(paths, user, workload)
        for spec in workload.files:
            self._write_file(paths, spec, user, mode=spec.mode)

    def observe(self, placement: Placement) -> ProcessObservation:
        """Cheap enough to call every second per instance. Its first sight of a running server watches it by
        pidfd (`exits`): the server's exit then reaches `watch_exits`' listeners at once, and until then the
        pidfile still names it, so an observation at rest is one `pread` of the server's /proc stat (is it
        stopped by a signal? no pidfd tells that) and the last observation again. Otherwise: a stat of the
        pidfile and a read of /proc/<pid>/stat. The slow part (the volume's usage, the sweep of the OS
        user's processes into the cgroups, a scan of all of /proc) runs at most every `SLOW_OBSERVE_EVERY`
        seconds per instance."""
        paths = self._layout(placement)
        slow_due, used, size = self._slow_part_due(paths)
        if not slow_due:
            seen = self._still_running(paths.instance_id)
            if seen is not None:
                return seen
        self._reaper.reap(force=False)
        if slow_due:
            used, size = self._usage(paths)
        record = self._recorded(paths)
        if record is None:
            return ProcessObservation(
                running=False, exit_reason="not started", volume_used_bytes=used, volume_size_bytes=size
            )
        alive, reason, stopped = processes.inspect(record)
        # `watch` is a no-op (True) for the server it already watches.
        if alive and not self._exits.watch(paths.instance_id, record) and self._exits.unavailable is None:
            alive, reason, stopped = processes.inspect(record)  # it exited meanwhile (or its pid was reused)
        if not alive:
            self._reaper.reap()
            code = self._reaper.exit_code(record.pid)
            if code is not None:
                reason = f"process {record.pid} {processes.describe_exit(code)}"
            return ProcessObservation(
                running=False, pid=record.pid, exit_reason=reason, volume_used_bytes=used, volume_size_bytes=size
            )
        if slow_due:
            user = users.lookup(paths.os_user)
            if user is not None:
                self._sweep_into_cgroup(paths, user)
            with self._slow_lock:
                self._slow[paths.instance_id] = (time.monotonic(), used, size)
        observation = ProcessObservation(
            running=True,
            stopped=stopped,
            pid=record.pid,
            started_at=processes.started_at(record),
            volume_used_bytes=used,
            volume_size_bytes=size,
        )
        self._last_seen[paths.instance_id] = (record, observation)
        return observation

    def _still_running(self, instance_id: str) -> ProcessObservation | None:
        """The last observation again, if its server is still watched (it has not exited) and alive; with
        whether it is stopped read anew. None: look properly."""
        last = self._last_seen.get(instance_id)
        if last is None:
            return None
        record, observation = last
        state = self._exits.state(instance_id, record)
        if state is None or state in processes.DEAD_STATES:
            return None
        stopped = state in processes.STOPPED_STATES
        if stopped != observation.stopped:
            observation = dataclasses.replace(observation, stopped=stopped)
            self._last_seen[instance_id] = (record, observation)
        return observation

    def _server_exited(self, _instance_id: str) -> None:
        """First of the exit listeners: reap it (if it is our child), so its exit status is known when it is
        observed (observe() itself no longer polls the children at rest)."""
        self._reaper.reap()

    def watch_exits(self, listener: Callable[[str], None]) -> None:
        """Call `listener(instance_id)` as soon as a server that `observe()` saw running exits (from the
        watcher's thread: it must return quickly). Nothing is called on a host without pidfds."""
        self._exits.listen(listener)

    def stop(self, placement: Placement, workload: WorkloadSpec) -> None:
        paths = self._layout(placement)
        self._stop(paths, workload.stop_signal, workload.stop_timeout)
        if self._pool is not None and paths.volume_image.exists():
            # An image made before the pool was on: unmounted now, so that the start moves it in (`pool`).
            volumes.unmount(paths.volume_image, paths.volume_dir)

    def _stop(self, paths: InstanceLayout, signum: int, timeout: float) -> None:
        self._reaper.reap()
        record = processes.read_record(paths.pidfile)
        if record is not None and processes.judge(record)[0]:
            log.info("stopping server of instance %s (pid %d, signal %d)", paths.instance_id, record.pid, signum)
            processes.signal_group(record.pid, signum)
            if not processes.wait_until(
                lambda: not processes.live_pids_of_group(record.pid), timeout, self._reaper.reap
            ):
                log.warning(
                    "instance %s: server ignored signal %d for %gs; killing", paths.instance_id, signum, timeout
                )
                processes.signal_group(record.pid, signal.SIGKILL)
        user = users.lookup(paths.os_user)
        if user is not None:
            self._kill_user_processes(paths, user)
        self._reaper.reap()
        paths.pidfile.unlink(missing_ok=True)

    # -- fencing and endpoints (docs/failover.md) ---------------------------------------------------

    @staticmethod
    def _fence_marker(paths: InstanceLayout) -> Path:
        return paths.private_dir / "fenced"

    @contextlib.contextmanager
    def _host_fence(self, paths: InstanceLayout) -> Iterator[None]:
        """The instance's start lock (flock, across every process of this host): a start and a fence never
        interleave, so a start that began before a fence has spawned its server when the fence kills it, and
        one after it finds the marker."""
        if not paths.private_dir.is_dir():  # not prepared yet: nothing to start or fence
            yield
            return
        fd = os.open(paths.private_dir / "start.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def fence(self, placement: Placement) -> None:
        """Fence the instance on this host: from now on `start` refuses it (until `unfence`), and every process
        of its OS user is killed, its cgroup thawed so that a frozen one dies too; returns once none is left
        (TemporaryError if any survives)."""
        paths = self._layout(placement)
        with self._host_fence(paths):
            if paths.private_dir.is_dir():
                marker = self._fence_marker(paths)
                files.write_private(marker, "fenced by a failover\n")
            self._reaper.reap()
            # Frozen first, where the host can: a process that forks to outrun the kill cannot (its children are
            # frozen with it), then every member of the cgroup and every process of the user is killed, and
            # thawed so that the kill takes effect.
            self._cgroups.freeze(paths.os_user)
            try:
                record = processes.read_record(paths.pidfile)
                if record is not None and processes.judge(record)[0]:
                    processes.signal_group(record.pid, signal.SIGKILL)
                for pid in self._cgroups.members(paths.os_user):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                user = users.lookup(paths.os_user)
                if user is not None:
                    processes.kill_of_user(user.uid, processes.live_pids_of_user(user.uid))
            finally:
                self._cgroups.thaw(paths.os_user)
            if user is not None:
                self._kill_user_processes(paths, user)
            self._reaper.reap()
            paths.pidfile.unlink(missing_ok=True)
        log.warning("instance %s fenced: every process of %s killed", paths.instance_id, paths.os_user)

    def unfence(self, placement: Placement) -> None:
        """Let the instance start again (idempotent)."""
        paths = self._layout(placement)
        with self._host_fence(paths):
            self._fence_marker(paths).unlink(missing_ok=True)

    def freeze(self, placement: Placement) -> bool:
        """Freeze every process of the instance's cgroup, as a hung host would (tests and benchmarks only);
        False where this host has no freezer for it."""
        return self._cgroups.freeze(self._layout(placement).os_user)

    def publish_routes(self, read: Callable[[], list[Route]]) -> None:
        """Make the installation's endpoint table hold `read()`'s routes (`Endpoints.publish`)."""
        self._ensure_root_dir(self._settings.state_dir, 0o755)
        self._endpoints.publish(read, self._settings.state_dir / "endpoints.lock")

    def clear_routes(self) -> None:
        """Remove the installation's endpoint table (a throwaway installation's, at its end)."""
        self._endpoints.clear()

    def _kill_user_processes(self, paths: InstanceLayout, user: users.OsUser) -> None:
        """SIGKILL every process of the instance's user and wait until none is left."""
        stray = processes.live_pids_of_user(user.uid)
        if not stray:
            return
        log.warning("instance %s: killing %d process(es) of user %s", paths.instance_id, len(stray), user.name)

        def gone() -> bool:
            remaining = processes.live_pids_of_user(user.uid)
            processes.kill_of_user(user.uid, remaining)
            return not remaining

        if not processes.wait_until(gone, self._settings.kill_timeout, self._reaper.reap):
            raise TemporaryError(f"processes of instance {paths.instance_id} survive SIGKILL", delay=2.0)

    # -- destroy ----------------------------------------------------------------------------------

    def destroy(self, placement: Placement) -> None:
        paths = self._layout(placement)
        self._forget_instance(paths.instance_id)
        self._stop(paths, signal.SIGKILL, self._settings.kill_timeout)
        if self._pool is not None:
            self._pool.ensure()  # after a reboot: its image is in the pool, which must be there to remove it
        volumes.release(self._image(paths), paths.volume_dir)
        self._cgroups.remove(paths.os_user)
        if volumes.mount_at(paths.volume_dir) is not None:
            raise TemporaryError(f"volume of instance {paths.instance_id} is still mounted")
        if paths.instance_dir.exists():
            shutil.rmtree(paths.instance_dir)
        if paths.socket_dir.exists():
            shutil.rmtree(paths.socket_dir)
        users.remove(paths.os_user, paths.instance_id)
        # The group of the replication set this instance founded (a set's id is its first primary's).
        peers.remove_group(self._settings, paths.instance_id)
        log.info("destroyed instance %s", paths.instance_id)

    # -- tools ------------------------------------------------------------------------------------

    def open_tool(self, placement: Placement, tool: ToolSpec) -> contextlib.AbstractContextManager[ToolRun]:
        """A backup's or a restore's tool for the instance (`tools`)."""
        groups = () if tool.peer_group is None else (peers.ensure_group(self._settings, tool.peer_group),)
        return tools.open_tool(self._layout(placement), tool, self._setpriv, self._settings.command_path, groups)

    # -- archived logs ----------------------------------------------------------------------------

    def _archive_dir(self, paths: InstanceLayout, directory: str) -> Path:
        path = Path(directory)
        if not path.is_relative_to(paths.volume_dir) or path == paths.volume_dir:
            raise PermanentError(f"archive directory {directory} is not on the volume of instance {paths.instance_id}")
        return path

    def archived(self, placement: Placement, directory: str) -> list[str]:
        paths = self._layout(placement)
        return files.list_files(paths.volume_dir, self._archive_dir(paths, directory))

    def read_archived(self, placement: Placement, directory: str, name: str, limit: int) -> bytes:
        paths = self._layout(placement)
        target = self._archive_dir(paths, directory) / name
        try:
            content = files.read_limited(paths.volume_dir, target, limit)
        except ValueError as exc:
            raise PermanentError(f"instance {paths.instance_id}: archived file {name}: {exc}") from None
        if content is None:
            raise PermanentError(f"instance {paths.instance_id}: archived file {name} is gone")
        return content

    def remove_archived(self, placement: Placement, directory: str, name: str) -> None:
        paths = self._layout(placement)
        files.remove(paths.volume_dir, self._archive_dir(paths, directory) / name)

    # -- helpers ----------------------------------------------------------------------------------

    def _layout(self, placement: Placement) -> InstanceLayout:
        """The instance's layout, derived once per placement (paths are built anew by nothing at rest)."""
        paths = self._layouts.get(placement)
        if paths is not None:
            return paths
        paths = layout(self._settings, placement.instance_id)
        if paths.os_user != placement.os_user or str(paths.data_dir) != placement.data_dir:
            raise PermanentError(f"placement of instance {placement.instance_id} was made with other settings")
        self._layouts[placement] = paths
        return paths

    def _live_record(self, paths: InstanceLayout) -> processes.ServerRecord | None:
        record = processes.read_record(paths.pidfile)
        if record is not None and processes.judge(record)[0]:
            return record
        return None

    def _require_volume(self, paths: InstanceLayout) -> None:
        if self._loop and volumes.mount_at(paths.volume_dir) is None:
            raise TemporaryError(f"volume of instance {paths.instance_id} is not mounted")
        if not paths.data_dir.is_dir():
            raise PermanentError(f"data dir of instance {paths.instance_id} is missing: the instance was not prepared")

    def _anchor(self, paths: InstanceLayout, target: Path) -> Path:
        """The placement directory that holds `target` (files may only go into the instance's own dirs)."""
        for directory in paths.user_dirs:
            if target.is_relative_to(directory) and target != directory:
                return directory
        raise PermanentError(f"file {target} is outside the directories of instance {paths.instance_id}")

    def _write_file(self, paths: InstanceLayout, spec: FileSpec, user: users.OsUser, mode: int) -> None:
        target = Path(spec.path)
        files.write_owned(self._anchor(paths, target), target, spec.content.encode(), user.uid, user.gid, mode)

    def _environment(self, paths: InstanceLayout, command: CommandSpec) -> dict[str, str]:
        tmp = str(paths.tmp_dir)
        env = {
            "PATH": self._settings.command_path, "LANG": "C.UTF-8", "HOME": str(paths.data_dir),
            "TMPDIR": tmp, "TMP": tmp, "TEMP": tmp,
        }
        env.update(dict(command.env))
        return env

    def _pids_of(self, uid: int) -> list[int]:
        """The live processes of `uid`, from one scan of /proc shared by every instance's observation for
        `SLOW_OBSERVE_EVERY` seconds (a scan reads every process of the host: one per instance would cost
        the square of the number of instances)."""
        with self._slow_lock:
            scanned = self._scan
        if scanned is None or time.monotonic() - scanned[0] >= SLOW_OBSERVE_EVERY:
            scanned = (time.monotonic(), processes.live_pids_by_uid())
            with self._slow_lock:
                self._scan = scanned
        return scanned[1].get(uid, [])

    def _recorded(self, paths: InstanceLayout) -> processes.ServerRecord | None:
        """The pidfile's record, parsed again only when the file changed (a stat instead of a read)."""
        try:
            info = paths.pidfile.stat()
        except FileNotFoundError:
            return None
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        with self._slow_lock:
            cached = self._records.get(paths.instance_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        record = processes.read_record(paths.pidfile)
        if record is not None:
            with self._slow_lock:
                self._records[paths.instance_id] = (key, record)
        return record

    def _slow_part_due(self, paths: InstanceLayout) -> tuple[bool, int | None, int | None]:
        """Whether observe() must redo its slow part now, else the usage it found last time."""
        with self._slow_lock:
            last = self._slow.get(paths.instance_id)
        if last is None or time.monotonic() - last[0] >= SLOW_OBSERVE_EVERY:
            return True, None, None
        return False, last[1], last[2]

    def _forget_observed(self, instance_id: str) -> None:
        with self._slow_lock:
            self._slow.pop(instance_id, None)
            self._records.pop(instance_id, None)
            self._last_seen.pop(instance_id, None)
            self._scan = None  # the next sweep looks at the processes as they are now

    def _forget_instance(self, instance_id: str) -> None:
        """Destroyed: nothing of the instance is kept (its layouts, its exit watch)."""
        self._forget_observed(instance_id)
        self._exits.forget(instance_id)
        for placement in [p for p in list(self._layouts) if p.instance_id == instance_id]:
            self._layouts.pop(placement, None)

    def _sweep_into_cgroup(self, paths: InstanceLayout, user: users.OsUser) -> None:
        if self._cgroups.mode == "none":
            return
        missing = sorted(set(self._pids_of(user.uid)) - self._cgroups.members_of_every_hierarchy(paths.os_user))
        if missing:
            self._cgroups.attach(paths.os_user, missing)

    def _usage(self, paths: InstanceLayout) -> tuple[int | None, int | None]:
        if self._loop and volumes.is_mounted(paths.volume_dir):
            found = volumes.usage(paths.volume_dir)
            return found.used_bytes, found.size_bytes
        if not paths.data_dir.is_dir():
            return None, None
        try:
            asked = json.loads(paths.resources_file.read_text())["volume_gb"] * volumes.GIB
        except (FileNotFoundError, ValueError, KeyError):
            asked = None
        return volumes.directory_usage(paths.data_dir), asked
