"""The composition root: settings -> the concrete store, engines, runtime, services and workers.

The only module (with test fixtures) that imports concrete plugins. Everything else receives protocols.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from reddwarf.domain.catalog import Flavor
from reddwarf.domain.errors import BadRequest
from reddwarf.domain.instance import Instance
from reddwarf.domain.workload import Placement
from reddwarf.engines.base import Engine
from reddwarf.engines.mariadb import MariadbEngine, MariadbSettings
from reddwarf.engines.postgresql import install as postgresql_install
from reddwarf.engines.postgresql.engine import PostgresqlEngine
from reddwarf.engines.postgresql.settings import PostgresqlSettings
from reddwarf.engines.redis import RedisEngine, RedisSettings
from reddwarf.identity import bootstrap
from reddwarf.identity.keystone.authenticator import KeystoneAuthenticator
from reddwarf.identity.keystone.settings import KeystoneSettings
from reddwarf.runtimes.base import Runtime
from reddwarf.runtimes.local.runtime import LocalRuntime
from reddwarf.runtimes.local.settings import LocalRuntimeSettings
from reddwarf.services import classification
from reddwarf.services.context import ServiceContext, TokenAuthenticator
from reddwarf.settings import DATABASE_FILE_NAME, Settings
from reddwarf.storage.artifact import ArtifactOptions, Keyring
from reddwarf.storage.base import Storage
from reddwarf.storage.filesystem import FilesystemStorage
from reddwarf.storage.s3 import S3Storage
from reddwarf.storage.settings import BackupStorageSettings
from reddwarf.store.database import Database
from reddwarf.store.listen import WorkListener
from reddwarf.store.secrets import KeyFileError
from reddwarf.workflows.kernel.dispatch import Dispatcher
from reddwarf.workflows.kernel.worker import new_worker_id
from reddwarf.workflows.reconcilers.deps import BackupFiles, ReconcilerDeps
from reddwarf.workflows.worker import FAILOVER_KINDS, POOL_KINDS, build_failover, build_health, build_workers

log = logging.getLogger(__name__)

KEY_FILE = "secret.key"
# What earlier versions kept directly in the state dir, readable by instance users: moved into the control dir.
_CONTROL_FILES = (KEY_FILE, bootstrap.TOKEN_FILE_NAME, bootstrap.PROJECT_FILE_NAME)
_SQLITE_FILES = tuple(DATABASE_FILE_NAME + suffix for suffix in ("", "-wal", "-shm", ".migrate.lock"))
CONTROL_UMASK = 0o077


class StartupRefused(Exception):
    """The control plane must not start on this host as it is set up; the message says why and what to do."""


def control_plane_umask() -> None:
    """Files the control plane creates are its own (0600/0700) unless it says otherwise: the entry points
    of the control plane (server, worker, operator commands on the store) call this first."""
    os.umask(CONTROL_UMASK)


def prepare_state_dir(settings: Settings) -> None:
    """The state dir (0755: instance users traverse it to their own directories) and, inside it, the control
    dir (0700 root: store, key, admin token and project file, unreadable and unlistable by instance users).
    Files an earlier version kept in the state dir itself are moved into the control dir (idempotent)."""
    state, control = settings.state_dir, settings.control_dir
    if not state.is_dir():
        state.mkdir(parents=True, exist_ok=True)
        state.chmod(0o755)  # not the umask's 0700: instance users live under it
    with contextlib.suppress(FileExistsError):
        control.mkdir(mode=0o700)
    info = control.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise StartupRefused(f"{control} must be a directory owned by the control plane's user")
    if stat.S_IMODE(info.st_mode) != 0o700:
        control.chmod(0o700)
    names = _CONTROL_FILES + (_SQLITE_FILES if settings.database_url is None else ())
    for name in names:
        _move_into_control(state / name, control / name)
    for entry in control.iterdir():
        entry_info = entry.lstat()
        if stat.S_ISREG(entry_info.st_mode) and entry_info.st_mode & 0o077:
            entry.chmod(0o600)


def _move_into_control(old: Path, new: Path) -> None:
    if not old.exists() and not old.is_symlink():
        return
    if new.exists() or new.is_symlink():
        raise StartupRefused(
            f"both {old} and {new} exist: an older Reddwarf wrote the first, this one the second. Keep the one "
            "in use (normally the newer), remove the other, and start again."
        )
    os.rename(old, new)  # same file system: atomic; a crash leaves the file at exactly one of the two paths
    log.warning("moved %s to %s (the control plane's files now live in a 0700 directory)", old, new)


def open_database(settings: Settings) -> Database:
    prepare_state_dir(settings)
    return Database.from_url(settings.effective_database_url, key_file=settings.control_dir / KEY_FILE)


def flavors(settings: Settings) -> dict[str, Flavor]:
    return {f.id: Flavor(id=f.id, name=f.name, ram_mb=f.ram_mb, vcpus=f.vcpus) for f in settings.flavors}


def engines() -> dict[str, Engine]:
    return {
        "postgresql": PostgresqlEngine(PostgresqlSettings()),
        "mariadb": MariadbEngine(MariadbSettings()),
        "redis": RedisEngine(RedisSettings()),
    }


# Engines whose software comes from Debian packages only: engine -> version -> packages.
DEBIAN_ENGINES: dict[str, dict[str, tuple[str, ...]]] = {
    "mariadb": {"10.11": ("mariadb-server", "mariadb-client", "mariadb-backup")},
    "redis": {"7.0": ("redis-server", "redis-tools")},
}


def install_engine(name: str, version: str) -> str:
    """Install what the local runtime needs to run `name` `version`; returns where it lives."""
    if name == "postgresql":
        pg = PostgresqlSettings()
        return str(postgresql_install.install(version, pg.engines_dir, pg.debian_root))
    packages = DEBIAN_ENGINES.get(name, {}).get(version)
    if packages is None:
        known = ", ".join(f"{e}@{v}" for e, vs in installable_versions().items() for v in vs)
        raise BadRequest(f"Reddwarf cannot install {name}@{version}; it knows {known}.", field="engine")
    apt_install(packages)
    found = [v for v in engines()[name].versions() if v.name == version]
    if not found:
        raise BadRequest(f"{name} {version} is still not usable after installing {', '.join(packages)}.")
    return found[0].bin_dir


def apt_install(packages: tuple[str, ...]) -> None:
    """apt-get install the packages that are missing (Debian's own service start is denied or irrelevant:
    Reddwarf runs its own servers)."""
    missing = [p for p in packages if not _dpkg_installed(p)]
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def _dpkg_installed(package: str) -> bool:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True,
                            check=False)
    return "install ok installed" in result.stdout


def installable_versions() -> dict[str, tuple[str, ...]]:
    """Versions `reddwarf engines install` knows how to get, per engine."""
    return {"postgresql": ("15", "18"), **{e: tuple(vs) for e, vs in DEBIAN_ENGINES.items()}}


def authenticator(settings: Settings) -> TokenAuthenticator | None:
    """The Keystone token validator when `identity=keystone` (settings `REDDWARF_KEYSTONE_*`), else None.

    Fails fast with `KeystoneConfigError` naming the missing settings; Keystone itself is first asked at
    the first request, so the API starts (and answers 503) while Keystone is down.
    """
    if settings.identity != "keystone":
        return None
    return KeystoneAuthenticator.from_settings(KeystoneSettings())


# GiB of the throwaway runtime's pool: room for one small volume at a time.
SCRATCH_POOL_GB = 4


def runtime(settings: Settings) -> Runtime:
    local = LocalRuntimeSettings()
    if "state_dir" not in local.model_fields_set:
        local = local.model_copy(update={"state_dir": settings.state_dir})
    return LocalRuntime(local)


def backup_files(settings: Settings) -> BackupFiles:
    """Where backups go (`REDDWARF_BACKUP_*`): a directory of the control plane by default, or S3; and the
    keyring of the control plane's backup keys, made when encryption is on and loaded whenever it exists
    (it reads encrypted backups after encryption was turned off again)."""
    config = BackupStorageSettings()
    storage: Storage
    if config.target == "s3":
        storage = S3Storage.from_settings(config)
    else:
        storage = FilesystemStorage(config.backup_dir(settings.state_dir))
    keys = config.key_directory(settings.state_dir)
    keyring = Keyring.load_or_create(keys) if config.encrypt or keys.is_dir() else None
    return BackupFiles(storage=storage, options=ArtifactOptions.from_settings(config), keyring=keyring)


@contextmanager
def scratch_runtime(state_dir: Path, address_pool: str, user_prefix: str) -> Iterator[Runtime]:
    """A runtime for throwaway servers (`reddwarf engines verify`): the operator's runtime settings with
    its own state dir, address pool and OS user prefix, so nothing it makes touches real instances; its
    copy-on-write pool (where the host has one) is a small one of its own, unmounted afterwards."""
    local = LocalRuntimeSettings(
        state_dir=state_dir, address_pool=address_pool, user_prefix=user_prefix, socket_base=None,
        routable_address=None, pool_dir=None, pool_gb=SCRATCH_POOL_GB,
    )
    runtime = LocalRuntime(local)
    try:
        yield runtime
    finally:
        runtime.release_pool()


@dataclass
class Components:
    settings: Settings
    db: Database
    engines: dict[str, Engine]
    runtime: Runtime
    flavors: dict[str, Flavor]
    backup_files: BackupFiles | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _dispatcher: Dispatcher = field(init=False)
    _pool_wake: threading.Event = field(default_factory=threading.Event)
    _listener: WorkListener | None = None
    _interrupts: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Operations this process's API records go straight to its waiting embedded workers (if it runs any).
        self._dispatcher = Dispatcher(new_worker_id(), self.settings.lease_ttl)

    def service_context(self) -> ServiceContext:
        return ServiceContext(
            settings=self.settings, db=self.db, engines=self.engines, flavors=self.flavors,
            region=self.settings.region_name, max_instances_per_project=self.settings.max_instances_per_project,
            max_volume_gb_per_project=self.settings.max_volumes_per_project,
            dispatch=self._dispatcher, authenticator=authenticator(self.settings), placement_for=self._placement,
            storage_capacity=self.runtime.storage_capacity,
            branch_refusal=self.runtime.branch_refusal(),
        )

    def _placement(self, instance: Instance) -> Placement:
        endpoint = instance.endpoint
        if endpoint is None:
            return self.runtime.placement(instance.runtime_id, "", 0)
        return self.runtime.placement(instance.runtime_id, endpoint.address, endpoint.port)

    def reconciler_deps(self) -> ReconcilerDeps:
        return ReconcilerDeps(
            db=self.db, engines=self.engines, runtime=self.runtime, flavors=self.flavors,
            storage_overcommit_ratio=self.settings.storage_overcommit_ratio, backups=self.backup_files,
            verify_backups=self.settings.verify_backups, replica_seed=self.settings.replica_seed,
        )

    def start_workers(self, count: int) -> None:
        """`count` worker threads (and the warm pool's own lane when the pool is on, and the failovers' lane)."""
        workers = build_workers(
            self.reconciler_deps(), self.settings, count, dispatcher=self._dispatcher, pool_wake=self._pool_wake
        )
        for n, worker in enumerate(workers):
            name = ("failover-worker" if worker.only_kinds == FAILOVER_KINDS
                    else "pool-worker" if worker.only_kinds else f"worker-{n}")
            thread = threading.Thread(target=worker.run, args=(self._stop,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if workers:  # health is observed apart from the workers, by one process of those sharing the store
            owner = new_worker_id()
            observers = (("health", build_health(self.reconciler_deps(), self.settings, owner)),
                         ("failover", build_failover(self.reconciler_deps(), self.settings, owner)))
            for name, observer in observers:
                self._interrupts.append(observer.interrupt)  # it waits on its own alarm, not on the stop event
                thread = threading.Thread(target=observer.run, args=(self._stop,), name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
        if workers:  # on a PostgreSQL store, wake them when another process records work
            self._listener = self.db.work_listener(self._work_recorded)
            if self._listener is not None:
                self._listener.start()

    def _work_recorded(self, kind: str) -> None:
        """Another process (or this one) recorded an operation of `kind` ("": of any kind)."""
        self._dispatcher.notify(kind)  # the workers that take `kind` (all kinds when there is no pool lane)
        if kind in POOL_KINDS or not kind:
            self._pool_wake.set()  # the pool's lane, if there is one

    def stop_workers(self) -> None:
        self._stop.set()
        for interrupt in self._interrupts:
            interrupt()
        self._interrupts.clear()
        self._dispatcher.close()  # no more hand-overs; one already promised is let go, claimable at once
        self._pool_wake.set()
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        for thread in self._threads:
            thread.join(timeout=60)
        self._threads.clear()


def build(settings: Settings) -> Components:
    classification.ledger_for(settings)  # a malformed ledger stops the start, naming the file and line
    try:
        database = open_database(settings)
    except KeyFileError as exc:
        raise StartupRefused(str(exc)) from None
    return Components(
        settings=settings, db=database, engines=engines(), runtime=runtime(settings), flavors=flavors(settings),
        backup_files=backup_files(settings),
    )


@contextmanager
def running(settings: Settings, *, workers: int | None = None) -> Iterator[Components]:
    """Components with the store migrated and embedded workers running; stops them on exit."""
    components = build(settings)
    components.db.upgrade()
    try:
        components.db.verify_key()
    except KeyFileError as exc:
        components.db.dispose()
        raise StartupRefused(str(exc)) from None
    components.start_workers(settings.embedded_workers if workers is None else workers)
    try:
        yield components
    finally:
        components.stop_workers()
        components.db.dispose()
