"""`MariadbEngine`: the `reddwarf.engines.base.Engine` implementation for MariaDB.

It composes the pure parts (`config`, `validation`, `passwords`) with discovery of the installed server
and the SQL of `admin`. It never learns where a server runs beyond the `Placement` it is handed.

How the admin account comes to be (no password in argv, env, a log, or an init file at later starts):
`init` runs `mariadb-install-db --no-defaults ... --extra-file=<config>/.install.sql`. That SQL file is
a secret init file (0600; the runtime removes it once init has run) holding only the admin password's
`mysql_native_password` hash; install-db's bootstrap server (no networking) runs it once to drop every
default account (root and the OS user, which log in through the unix socket) and create
`reddwarf_admin` @ 127.0.0.1, localhost and the placement address. Every later start of
`mariadbd --defaults-file=<config>/my.cnf` has no init file at all.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import PurePosixPath

from reddwarf.domain.capabilities import Capabilities, Capability
from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.replication import Topology
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import CommandSpec, FileSpec, Placement, Resources, WorkloadSpec
from reddwarf.engines import tls
from reddwarf.engines.mariadb import admin, backup, config, passwords, replication, validation
from reddwarf.engines.mariadb.accounts import MariadbAccounts
from reddwarf.engines.mariadb.backup import MariadbBackups
from reddwarf.engines.mariadb.discovery import VersionScanner
from reddwarf.engines.mariadb.settings import MariadbSettings
from reddwarf.engines.mariadb.snapshot import MariadbSnapshots

DATASTORE = "mariadb"
ADMIN_USER = "reddwarf_admin"
DEFAULT_PORT = 3306
MKDIR = "/bin/mkdir"
_ENV = (("TZ", "UTC"), ("LC_ALL", "C.UTF-8"))


class MariadbEngine:
    """MariaDB: install-db with the default accounts dropped, rendered my.cnf, hash-only passwords."""

    def __init__(self, settings: MariadbSettings | None = None) -> None:
        self._settings = settings or MariadbSettings()
        self._scanner = VersionScanner(timeout=self._settings.version_probe_timeout)

    @property
    def name(self) -> str:
        return DATASTORE

    @property
    def default_port(self) -> int:
        return DEFAULT_PORT

    @property
    def extra_port_offsets(self) -> tuple[int, ...]:
        return ()

    @property
    def admin_user(self) -> str:
        return ADMIN_USER

    @property
    def settings(self) -> MariadbSettings:
        return self._settings

    def capabilities(self, version: DatastoreVersion) -> Capabilities:
        return Capabilities(
            offered=frozenset({Capability.USERS, Capability.DATABASES, Capability.ROOT, Capability.BACKUP,
                               Capability.REPLICATION, Capability.SYNC_REPLICATION}),
            backup_strategies=(backup.FULL_STRATEGY, backup.INCREMENTAL_STRATEGY),
            replication_strategies=(replication.STRATEGY,),
        )

    def versions(self) -> list[DatastoreVersion]:
        """The installed server (Debian's mariadb-server by default), if any; never raises."""
        found = self._scanner.scan(self._settings.server_binary)
        if found is None:
            return []
        return [
            DatastoreVersion(
                datastore=DATASTORE, name=found.name, number=found.number, bin_dir=str(found.binary.parent)
            )
        ]

    def validate_spec(self, spec: InstanceSpec) -> None:
        validation.validate_spec(spec)

    def workload(
        self,
        spec: InstanceSpec,
        version: DatastoreVersion,
        flavor: Flavor,
        placement: Placement,
        admin_password: Secret,
        topology: Topology | None = None,
    ) -> WorkloadSpec:
        """Directories and install-db (accounts secured) once, then `mariadbd --defaults-file=my.cnf`. Every
        server has TLS files (a set's certificate once it is a member; until then a throwaway one of its own);
        a replica is seeded from a snapshot of its upstream and follows it (`follow.sql`)."""
        password = admin_password.reveal()
        if not password or "\0" in password:
            raise ValueError("the admin password must be non-empty and hold no NUL")
        paths = config.layout(placement)
        resources = Resources(memory_mb=flavor.ram_mb, vcpus=flavor.vcpus, volume_gb=spec.volume_size_gb)
        memory = config.memory_settings(resources.memory_mb, resources.volume_gb)
        make_dirs = CommandSpec(argv=(MKDIR, "-p", "-m", "0700", paths.files_dir, paths.tmp_dir), timeout=30.0)
        install_db = CommandSpec(
            argv=(
                str(self._settings.install_db_binary),
                "--no-defaults",
                f"--basedir={self._settings.basedir}",
                f"--datadir={paths.datadir}",
                f"--tmpdir={paths.tmp_dir}",
                "--skip-test-db",
                "--skip-name-resolve",
                # "normal": a passwordless root@localhost that the extra-file drops inside the same offline
                # bootstrap (no networking), so it is never reachable; "socket" costs ~1 s more per install.
                "--auth-root-authentication-method=normal",
                f"--extra-file={paths.install_sql}",
                # Passed on to the bootstrap server: the redo log is made at its final size.
                f"--innodb-log-file-size={memory.log_file_mb}M",
                f"--character-set-server={config.CHARACTER_SET}",
                f"--collation-server={config.COLLATION}",
            ),
            env=_ENV,
            timeout=300.0,
        )
        server = CommandSpec(
            argv=(
                str(PurePosixPath(version.bin_dir) / "mariadbd"),
                f"--defaults-file={paths.config_file}",
                # After the file, so they win over it: where the server listens and which files it touches.
                *config.pinned_arguments(placement),
            ),
            env=_ENV,
        )
        install_sql = config.render_install_sql(
            ADMIN_USER, passwords.native_hash(password), config.admin_hosts(placement)
        )
        init: tuple[CommandSpec, ...] = (make_dirs, install_db)
        init_files: tuple[FileSpec, ...] = (FileSpec(paths.install_sql, install_sql, mode=0o600, secret=True),)
        upstream = topology.upstream if topology is not None else None
        cnf = config.render_my_cnf(placement, resources, replica=upstream is not None,
                                   semi_sync=upstream is None and topology is not None and bool(topology.synchronous))
        files = (FileSpec(paths.config_file, cnf, mode=0o600),
                 *tls.member_files(placement, topology, paths.tls_ca, paths.tls_cert, paths.tls_key))
        if upstream is not None and topology is not None:
            if topology.credential is None:
                raise PermanentError(f"Replica {placement.instance_id} has no replication credential of its set.")
            init = replication.MariadbReplication(ADMIN_USER).seed(upstream, placement, topology.slot)
            init_files = ()
            follow = replication.render_follow_sql(upstream, placement, topology.credential)
            files += (FileSpec(paths.follow_sql, follow, mode=0o600, secret=True),)
        return WorkloadSpec(
            instance_id=placement.instance_id,
            init=init,
            server=server,
            resources=resources,
            init_files=init_files,
            files=files,
            stop_signal=signal.SIGTERM,  # clean shutdown: InnoDB flushes and closes its files
            stop_timeout=120.0,
            labels=(("datastore", DATASTORE), ("datastore_version", version.name)),
        )

    def probe(
        self, placement: Placement, user: str, password: Secret, timeout: float = 2.0, dbname: str | None = None
    ) -> bool:
        """`SELECT 1` as `user` (into `dbname` if given) over the instance's unix socket, its server checked to
        run as the instance's OS user; never raises."""
        return admin.probe(admin.target(placement, user, password, dbname, timeout))

    def ping(self, placement: Placement, timeout: float = 2.0, busy_is_alive: bool = False) -> bool:
        """The tenant endpoint accepts connections and belongs to the instance's OS user; no credential."""
        return admin.ping(placement, timeout, busy_is_alive=busy_is_alive)

    def bootstrap(self, spec: InstanceSpec, placement: Placement, admin_password: Secret) -> None:
        """Secure accounts, create the spec's databases, users and grants as the admin; idempotent."""
        admin.bootstrap(spec, admin.target(placement, ADMIN_USER, admin_password, timeout=10.0))

    def validate_databases(self, databases: Sequence[DatabaseSpec], field: str = "databases") -> None:
        validation.validate_databases(databases, field)

    def validate_users(self, users: Sequence[UserSpec], field: str = "users") -> None:
        validation.validate_users(users, field)

    def accounts(self, placement: Placement, admin_password: Secret) -> MariadbAccounts:
        """Live users, databases, grants and root of the instance at `placement`, as the admin."""
        return MariadbAccounts(
            admin.target(placement, ADMIN_USER, admin_password, timeout=self._settings.accounts_timeout),
            root_superuser=self._settings.root_superuser,
        )

    def backups(self, version: DatastoreVersion) -> MariadbBackups:
        """mariadb-backup full and incremental backups of `version`, restores and adoption (`backup`)."""
        return MariadbBackups(self._settings, version, ADMIN_USER)

    def replication(self, version: DatastoreVersion) -> replication.MariadbReplication:
        """GTID replication over TLS with the set's own CA (`replication`)."""
        return replication.MariadbReplication(ADMIN_USER)

    def snapshots(self, version: DatastoreVersion) -> MariadbSnapshots:
        """How a running server is quiesced for a volume snapshot and fixed up on its copy (`snapshot`)."""
        return MariadbSnapshots(ADMIN_USER)

