"""`PostgresqlEngine`: the `reddwarf.engines.base.Engine` implementation for PostgreSQL.

It composes the pure parts (`config`, `validation`, `scram`) with discovery of installed versions and the
SQL of `admin`. It never learns where a server runs beyond the `Placement` it is handed.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import PurePosixPath

from reddwarf.domain.capabilities import Capabilities, Capability
from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.replication import Topology
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import CommandSpec, FileSpec, Placement, Resources, WorkloadSpec
from reddwarf.engines.postgresql import admin, backup, config, replication, validation
from reddwarf.engines.postgresql.accounts import PostgresqlAccounts
from reddwarf.engines.postgresql.backup import PostgresqlBackups
from reddwarf.engines.postgresql.discovery import VersionScanner
from reddwarf.engines.postgresql.replication import PostgresqlReplication
from reddwarf.engines.postgresql.settings import PostgresqlSettings
from reddwarf.engines.postgresql.snapshot import PostgresqlSnapshots

DATASTORE = "postgresql"
ADMIN_USER = "reddwarf_admin"
DEFAULT_PORT = 5432
INIT_PASSWORD_FILE = ".initdb-password"  # secret init file: removed by the runtime once initdb has run


class PostgresqlEngine:
    """PostgreSQL: initdb with checksums and SCRAM, rendered configuration, SCRAM-only users."""

    def __init__(self, settings: PostgresqlSettings | None = None) -> None:
        self._settings = settings or PostgresqlSettings()
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
    def settings(self) -> PostgresqlSettings:
        return self._settings

    def capabilities(self, version: DatastoreVersion) -> Capabilities:
        strategies = self.backups(version).strategies()
        return Capabilities(
            offered=frozenset({Capability.USERS, Capability.DATABASES, Capability.ROOT, Capability.BACKUP,
                               Capability.REPLICATION, Capability.SYNC_REPLICATION}),
            backup_strategies=tuple(s for s in (strategies.full, strategies.incremental) if s is not None),
            replication_strategies=(replication.STRATEGY,),
        )

    def versions(self) -> list[DatastoreVersion]:
        """Installed majors (Debian's and Reddwarf-installed), ascending; never raises."""
        return [
            DatastoreVersion(datastore=DATASTORE, name=found.major, number=found.number, bin_dir=str(found.bin_dir))
            for found in self._scanner.scan(self._settings.debian_root, self._settings.engines_dir)
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
        """initdb (checksums, SCRAM, UTF8, C.UTF-8) once, then `postgres` with the rendered configuration. A
        replica is seeded by a base backup of its upstream instead, and starts as a hot standby of it."""
        password = admin_password.reveal()
        if not password or any(ch in password for ch in "\n\r\0"):
            raise ValueError("the admin password must be non-empty and hold no line breaks or NUL")
        bin_dir = PurePosixPath(version.bin_dir)
        config_dir = PurePosixPath(placement.config_dir)
        password_file = str(config_dir / INIT_PASSWORD_FILE)
        resources = Resources(memory_mb=flavor.ram_mb, vcpus=flavor.vcpus, volume_gb=spec.volume_size_gb)
        initdb = CommandSpec(
            argv=(
                str(bin_dir / "initdb"),
                "-D",
                placement.data_dir,
                "-U",
                ADMIN_USER,
                f"--pwfile={password_file}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--data-checksums",
                "--no-instructions",
                # The runtime syncs the whole data filesystem once before it records the instance as
                # initialised (see `Runtime.initialise`): initdb's own per-file fsyncs only cost time.
                "--no-sync",
            ),
            env=(("LC_ALL", "C.UTF-8"), ("TZ", "UTC")),
            timeout=300.0,
        )
        server = CommandSpec(
            argv=(
                str(bin_dir / "postgres"),
                "-D",
                placement.data_dir,
                "-c",
                f"config_file={config_dir / config.CONF_FILE}",
                # Where the server listens and whom it admits, pinned above postgresql.auto.conf.
                *config.pinned_arguments(placement),
            ),
            env=(("LC_ALL", "C.UTF-8"), ("TZ", "UTC")),
        )
        upstream = topology.upstream if topology is not None else None
        follows = None if upstream is None or topology is None else (
            replication.conninfo(upstream, topology.slot), topology.slot)
        files: tuple[FileSpec, ...] = (
            FileSpec(
                str(config_dir / config.CONF_FILE),
                # Incrementals need the WAL summarized from before their parent was taken: always on where
                # the version has it.
                config.render_postgresql_conf(placement, resources, summarize_wal=backup.has_incrementals(version),
                                              upstream=follows,
                                              synchronous=() if topology is None or follows else topology.synchronous),
            ),
            FileSpec(
                str(config_dir / config.HBA_FILE),
                config.render_pg_hba(placement, ADMIN_USER, self._settings.allowed_networks),
            ),
            FileSpec(str(config_dir / config.IDENT_FILE), config.render_pg_ident(
                tuple(peer.os_user for peer in topology.peers) if topology is not None else ())),
        )
        init: tuple[CommandSpec, ...] = (initdb,)
        init_files: tuple[FileSpec, ...] = (FileSpec(password_file, password + "\n", mode=0o600, secret=True),)
        if upstream is not None and topology is not None:
            init = self.replication(version).seed(upstream, placement, topology.slot)
            init_files = ()
            # Written before every start while the member is a replica; PostgreSQL removes it on promotion.
            files += (FileSpec(str(PurePosixPath(placement.data_dir) / replication.STANDBY_SIGNAL), ""),)
        return WorkloadSpec(
            instance_id=placement.instance_id,
            init=init,
            server=server,
            resources=resources,
            init_files=init_files,
            files=files,
            stop_signal=signal.SIGINT,  # fast shutdown: roll back sessions, checkpoint, exit
            stop_timeout=60.0,
            labels=(("datastore", DATASTORE), ("datastore_version", version.name)),
            peer_group=None if topology is None else topology.set_id,
        )

    def probe(
        self, placement: Placement, user: str, password: Secret, timeout: float = 2.0, dbname: str | None = None
    ) -> bool:
        """`SELECT 1` as `user` (database `dbname`, default "postgres") over the instance's unix socket, its
        server checked to run as the instance's OS user; never raises."""
        return admin.probe(admin.target(placement, user, password, dbname, timeout))

    def ping(self, placement: Placement, timeout: float = 2.0, busy_is_alive: bool = False) -> bool:
        """The tenant endpoint accepts connections and belongs to the instance's OS user; no credential."""
        return admin.ping(placement, ADMIN_USER, timeout, busy_is_alive=busy_is_alive)

    def bootstrap(self, spec: InstanceSpec, placement: Placement, admin_password: Secret) -> None:
        """Create the spec's databases, users and grants as the admin; idempotent."""
        admin.bootstrap(spec, admin.target(placement, ADMIN_USER, admin_password, timeout=10.0))

    def validate_databases(self, databases: Sequence[DatabaseSpec], field: str = "databases") -> None:
        validation.validate_databases(databases, field)

    def validate_users(self, users: Sequence[UserSpec], field: str = "users") -> None:
        validation.validate_users(users, field)

    def accounts(self, placement: Placement, admin_password: Secret) -> PostgresqlAccounts:
        """Live users, databases, grants and root of the instance at `placement`, as the admin."""
        return PostgresqlAccounts(
            admin.target(placement, ADMIN_USER, admin_password, timeout=self._settings.accounts_timeout),
            root_superuser=self._settings.root_superuser,
        )

    def backups(self, version: DatastoreVersion) -> PostgresqlBackups:
        """Full backups with pg_basebackup; block-level incrementals where the version has them (17+)."""
        return PostgresqlBackups(version, ADMIN_USER)

    def snapshots(self, version: DatastoreVersion) -> PostgresqlSnapshots:
        """How a running server is quiesced for a volume snapshot and fixed up on its copy (`snapshot`)."""
        return PostgresqlSnapshots(ADMIN_USER)

    def replication(self, version: DatastoreVersion) -> PostgresqlReplication:
        """Streaming replication with a physical slot per replica, seeded by pg_basebackup (`replication`)."""
        return PostgresqlReplication(version, ADMIN_USER)
