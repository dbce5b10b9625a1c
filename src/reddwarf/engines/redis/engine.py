"""`RedisEngine`: the `reddwarf.engines.base.Engine` implementation for Redis.

It composes the pure parts (`config`, `validation`) with discovery of installed versions and the
commands of `admin`. It never learns where a server runs beyond the `Placement` it is handed.

The ACL file is an *init* file: the runtime writes it once, before the first start, and never again,
because tenant users created at run time (`ACL SETUSER` + `ACL SAVE`) live in it too. redis.conf is a
plain file, rewritten before every start. Redis needs no init command: its data directory starts empty,
and a server started without its ACL file refuses to start (it never falls back to an open `default`).
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
from reddwarf.engines.redis import admin, backup, config, replication, validation
from reddwarf.engines.redis.accounts import RedisAccounts
from reddwarf.engines.redis.backup import RedisBackups
from reddwarf.engines.redis.discovery import SERVER_BINARY, VersionScanner
from reddwarf.engines.redis.settings import RedisSettings
from reddwarf.engines.redis.snapshot import RedisSnapshots

DATASTORE = "redis"
ADMIN_USER = "reddwarf_admin"
DEFAULT_PORT = 6379


class RedisEngine:
    """Redis: ACL users only (default user off), RDB + AOF persistence, maxmemory from the flavor."""

    def __init__(self, settings: RedisSettings | None = None) -> None:
        self._settings = settings or RedisSettings()
        self._scanner = VersionScanner(timeout=self._settings.version_probe_timeout)

    @property
    def name(self) -> str:
        return DATASTORE

    @property
    def default_port(self) -> int:
        return DEFAULT_PORT

    @property
    def extra_port_offsets(self) -> tuple[int, ...]:
        return (config.TLS_PORT_OFFSET,)

    @property
    def admin_user(self) -> str:
        return ADMIN_USER

    @property
    def settings(self) -> RedisSettings:
        return self._settings

    def capabilities(self, version: DatastoreVersion) -> Capabilities:
        return Capabilities(
            offered=frozenset({Capability.USERS, Capability.ROOT, Capability.BACKUP, Capability.REPLICATION}),
            backup_strategies=(backup.FULL_STRATEGY,),
            replication_strategies=(replication.STRATEGY,),
        )

    def versions(self) -> list[DatastoreVersion]:
        """Installed major.minor versions found in the configured bin dirs, ascending; never raises."""
        return [
            DatastoreVersion(datastore=DATASTORE, name=found.name, number=found.number, bin_dir=str(found.bin_dir))
            for found in self._scanner.scan(self._settings.bin_dirs)
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
        """`redis-server <config_dir>/redis.conf` in the foreground; the ACL file written once, before init. Every
        server has TLS files for its replication port (its set's once it is a member; until then a throwaway
        one); a replica follows its upstream (`replicaof`, full sync: nothing to seed)."""
        password = admin_password.reveal()
        if not password:
            raise ValueError("the admin password must be non-empty")
        config_dir = PurePosixPath(placement.config_dir)
        resources = Resources(memory_mb=flavor.ram_mb, vcpus=flavor.vcpus, volume_gb=spec.volume_size_gb)
        server = CommandSpec(
            argv=(
                str(PurePosixPath(version.bin_dir) / SERVER_BINARY),
                str(config_dir / config.CONF_FILE),
                # After the file, so they win over it: where the server listens, pinned.
                *config.pinned_arguments(placement),
            ),
        )
        upstream = topology.upstream if topology is not None else None
        follows = None
        if upstream is not None and topology is not None:
            if topology.credential is None:
                raise PermanentError(f"Replica {placement.instance_id} has no replication credential of its set.")
            follows = (upstream, topology.credential.reveal())
        conf = config.render_redis_conf(placement, resources, self._settings.maxmemory_percent, upstream=follows)
        # Not `secret`: the runtime removes secret init files after init, and this one must stay. It holds
        # password hashes only, is 0600 and belongs to the instance user, whose server rewrites it (ACL SAVE).
        aclfile = FileSpec(str(config_dir / config.ACL_FILE), config.render_aclfile(ADMIN_USER, password), mode=0o600)
        return WorkloadSpec(
            instance_id=placement.instance_id,
            init=(),
            server=server,
            resources=resources,
            init_files=(aclfile,),
            files=(FileSpec(str(config_dir / config.CONF_FILE), conf, mode=0o600, secret=follows is not None),
                   *tls.member_files(placement, topology, str(config_dir / config.TLS_CA),
                                     str(config_dir / config.TLS_CERT), str(config_dir / config.TLS_KEY))),
            stop_signal=signal.SIGTERM,  # with save rules set, Redis writes a final RDB snapshot and exits
            stop_timeout=120.0,
            labels=(("datastore", DATASTORE), ("datastore_version", version.name)),
        )

    def probe(
        self, placement: Placement, user: str, password: Secret, timeout: float = 2.0, dbname: str | None = None
    ) -> bool:
        """AUTH as `user` and PING over the instance's unix socket, its server checked to run as the instance's
        OS user; never raises. Redis has no named databases: `dbname` is ignored."""
        return admin.probe(admin.target(placement, user, password, timeout))

    def ping(self, placement: Placement, timeout: float = 2.0, busy_is_alive: bool = False) -> bool:
        """The tenant endpoint accepts connections and belongs to the instance's OS user; no credential."""
        return admin.ping(placement, timeout, busy_is_alive=busy_is_alive)

    def bootstrap(self, spec: InstanceSpec, placement: Placement, admin_password: Secret) -> None:
        """Create the spec's users as ACL users (hashed passwords) and ACL SAVE them, as the admin; idempotent."""
        admin.bootstrap(spec, admin.target(placement, ADMIN_USER, admin_password, timeout=10.0))

    def validate_databases(self, databases: Sequence[DatabaseSpec], field: str = "databases") -> None:
        """Redis has no named databases: any database is a `BadRequest` naming `field`."""
        validation.validate_databases(databases, field)

    def validate_users(self, users: Sequence[UserSpec], field: str = "users") -> None:
        validation.validate_users(users, field)

    def accounts(self, placement: Placement, admin_password: Secret, version: str = "any") -> RedisAccounts:
        """Live ACL users and root of the instance at `placement`, as the admin. `version` only words the
        `CapabilityMissing` of the database methods (the protocol does not pass it)."""
        return RedisAccounts(
            admin.target(placement, ADMIN_USER, admin_password, timeout=self._settings.accounts_timeout),
            version,
            root_superuser=self._settings.root_superuser,
        )

    def backups(self, version: DatastoreVersion) -> RedisBackups:
        """RDB snapshot backups of `version` with the ACL file, restores and adoption (`backup`)."""
        return RedisBackups(self._settings, version, ADMIN_USER)

    def replication(self, version: DatastoreVersion) -> replication.RedisReplication:
        """REPLICAOF over TLS with the set's own CA and a replication ACL user (`replication`)."""
        return replication.RedisReplication(ADMIN_USER, version.bin_dir)

    def snapshots(self, version: DatastoreVersion) -> RedisSnapshots:
        """How a running server is quiesced for a volume snapshot and fixed up on its copy (`snapshot`)."""
        return RedisSnapshots(ADMIN_USER)

