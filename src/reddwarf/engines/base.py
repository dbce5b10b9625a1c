"""The Engine protocol: what every datastore implementation owes the control plane.

Obligations of an implementation:

- `versions()` discovers what is installed on this host (cheap; may be cached) and never raises for a
  missing installation: it returns fewer versions.
- `validate_spec()` is pure: it raises `BadRequest` naming the field for anything the engine cannot honour
  (invalid user or database names, reserved names, unsupported character sets).
- `workload()` is pure: the same inputs give the same `WorkloadSpec`. It renders configuration (address,
  port, socket directory, memory from the flavor) and the one-time init commands. Secrets (the admin
  password) go into secret `FileSpec`s, never into argv.
- No credential ever goes to a server that was not authenticated: every connection that logs in (`probe`,
  `bootstrap`, `accounts`) goes over the instance's own unix socket in `placement.socket_dir` and checks the
  established connection's peer (`SO_PEERCRED`: the instance's OS user) before the first byte of a login
  (`reddwarf.engines.peer`), and refuses cleartext authentication methods.
- `probe()` logs in over that unix socket with a short timeout, as `user` (into `dbname` where the engine
  has databases; None means its maintenance database); it returns False (never raises) when the server is
  not ready yet, refuses the credentials, or runs as another OS user.
- `ping()` checks the tenant endpoint (TCP to `placement.address`, `placement.port`) without any credential:
  True (never raises) only when the listener that accepted the connection belongs to the instance's OS user
  and answers the engine's protocol as a server that accepts connections.
- `bootstrap()` creates the admin-visible objects of the spec (databases, users, grants). It is idempotent:
  running it twice (e.g. after a worker crash) leaves the same state. Connection failures raise
  `TemporaryError`; refusals the tenant caused raise `PermanentError` with a message a tenant can act on.
- `validate_databases()` / `validate_users()` are pure and apply the same naming rules as
  `validate_spec()` to the databases and users of the accounts API; `field` prefixes the field named in
  the `BadRequest` (e.g. `databases[0].name`).
- `accounts()` returns an `Accounts` bound to one running instance (see its docstring).
- `backups()` returns the `Backups` of one version (see its docstring); `capabilities()` lists its
  strategies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from reddwarf.domain.accounts import UserInfo
from reddwarf.domain.backup import (
    ArchivePiece,
    ArchiveSpec,
    BackupResult,
    BackupStrategies,
    ChainLink,
    ParentBackup,
    RestorePlan,
)
from reddwarf.domain.capabilities import Capabilities
from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.replication import ReplicaState, Seed, SyncReading, Topology
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import CommandSpec, Placement, ToolSpec, WorkloadSpec


class Engine(Protocol):
    """A datastore implementation (PostgreSQL, MariaDB, Redis)."""

    @property
    def name(self) -> str:
        """The datastore name users type and the registry key (= package name)."""
        ...

    @property
    def default_port(self) -> int: ...

    @property
    def extra_port_offsets(self) -> tuple[int, ...]:
        """The server's other listeners, each at its port plus an offset on its address (Redis's replication
        port): the address allocation checks them free too."""
        ...

    @property
    def admin_user(self) -> str:
        """The name of the per-instance admin account Reddwarf uses; hidden from tenants."""
        ...

    def capabilities(self, version: DatastoreVersion) -> Capabilities: ...

    def versions(self) -> list[DatastoreVersion]: ...

    def validate_spec(self, spec: InstanceSpec) -> None: ...

    def workload(
        self, spec: InstanceSpec, version: DatastoreVersion, flavor: Flavor, placement: Placement,
        admin_password: Secret, topology: Topology | None = None,
    ) -> WorkloadSpec:
        """`topology`: the instance's place in its replication set (None: a single instance). A replica's
        workload seeds from and follows `topology.upstream`; a member's lets the set's other members replicate
        from it; `WorkloadSpec.peer_group` is the set's id either way."""
        ...

    def probe(
        self, placement: Placement, user: str, password: Secret, timeout: float = 2.0, dbname: str | None = None
    ) -> bool: ...

    def ping(self, placement: Placement, timeout: float = 2.0, busy_is_alive: bool = False) -> bool:
        """The tenant endpoint answers: a listener of the instance's OS user that accepts connections (with
        `busy_is_alive`, also one that answers that every connection slot is taken). No credential is sent."""
        ...

    def bootstrap(self, spec: InstanceSpec, placement: Placement, admin_password: Secret) -> None:
        """Create the spec's databases and users on the running server; idempotent. Always connects, even
        with nothing to create, and raises `TemporaryError` when it cannot (a create that took a warm-pool
        server skips `start` on its first attempt and relies on this to notice a server that died)."""
        ...

    def validate_databases(self, databases: Sequence[DatabaseSpec], field: str = "databases") -> None: ...

    def validate_users(self, users: Sequence[UserSpec], field: str = "users") -> None: ...

    def accounts(self, placement: Placement, admin_password: Secret) -> Accounts: ...

    def backups(self, version: DatastoreVersion) -> Backups: ...

    def snapshots(self, version: DatastoreVersion) -> Snapshots: ...

    def replication(self, version: DatastoreVersion) -> Replication | None:
        """The version's replication, or None when the engine has none (its capabilities say so)."""
        ...


class Accounts(Protocol):
    """Live account administration on one running instance, connected as Reddwarf's admin account.

    Obligations of an implementation:

    - Every call opens its own short-lived connection with a short timeout (reads answer tenants live).
    - Listings show tenant objects only: never Reddwarf's admin account, never system databases or roles.
      No method ever lists, changes or drops the admin account: a name that is the admin's is `NotFound`.
    - Writes are idempotent: creating what exists with the same definition, or dropping what is gone,
      succeeds, so a write re-run after a worker crash ends in the same state. `Conflict` only where the
      tenant asked for something that contradicts what exists (rename onto an existing user).
    - `host` is Trove's: MariaDB accounts are `name@host`; engines without hosts accept only `%`.
    - A capability the engine lacks (databases on Redis, root where not offered) raises `CapabilityMissing`.
    - Unreachable server: `TemporaryError`. The engine refused (bad charset, the tenant broke something):
      `PermanentError` with a message the tenant can act on, never containing a password.
    - Passwords never reach the engine's logs or Reddwarf's: send verifiers/hashes where the engine takes
      them, else bound parameters or quoted literals with statement logging off.
    """

    def list_databases(self) -> list[DatabaseSpec]: ...

    def create_databases(self, databases: Sequence[DatabaseSpec]) -> None: ...

    def delete_database(self, name: str) -> None: ...

    def list_users(self) -> list[UserInfo]: ...

    def get_user(self, name: str, host: str = "%") -> UserInfo | None: ...

    def create_users(self, users: Sequence[UserSpec]) -> None: ...

    def update_user(
        self, name: str, host: str = "%", *, new_name: str | None = None, new_password: Secret | None = None,
        new_host: str | None = None,
    ) -> None: ...

    def delete_user(self, name: str, host: str = "%") -> None: ...

    def grant(self, name: str, host: str, databases: Sequence[str]) -> None: ...

    def revoke(self, name: str, host: str, database: str) -> None: ...

    def root_enabled(self) -> bool: ...

    def enable_root(self, password: Secret) -> str:
        """Create or reset the engine's superuser account with `password`; returns its user name."""
        ...

    def disable_root(self) -> None: ...


class Backups(Protocol):
    """Backups and restores of one engine version with the engine's own tools.

    Obligations of an implementation:

    - A backup is one byte stream written by one tool (`BackupRun.tool`) to its stdout; the control plane
      compresses, checksums, encrypts and stores it (`reddwarf.storage`), and feeds it back, verified, to
      the restore's extract tools. Nothing of the engine ever writes to storage itself.
    - Tools that read or write the instance's files run as the instance's OS user (`ToolSpec.as_instance`);
      a tool run as the control plane touches no file of the instance (a tenant can plant symlinks there).
      Tools log in over the instance's unix socket only, and only to a server that runs as the instance's OS
      user (libpq's `requirepeer`, or an account that authenticates the OS user itself, so that no secret
      exists); passwords reach a tool in a secret `ToolSpec.files` entry, never argv.
    - `incremental_blocker()` is a live read (short timeout, over the unix socket): None when an incremental
      can be taken now, else the reason a tenant can act on (no incremental strategy; a setting that needs a
      restart first). `prepare()` may wait for the engine (a BGSAVE) and raises `TemporaryError` or
      `PermanentError` (with a tenant-readable message) as usual.
    - `archive()` is pure: where the server archives log files for the control plane to ship (None: it
      archives nothing). The control plane ships each finished file to backup storage, then removes it.
    - `restore()` is pure; `adopt()` runs once the restored server answers, over the unix socket: it makes
      the server the new instance's own (the admin credential rotated from `old_admin` to `new_admin`;
      accounts that authenticated the source's OS user replaced by the new one's). It is idempotent: run
      again after it succeeded, it logs in with `new_admin` and changes nothing.
    - `check()` runs the engine's own consistency checks on a restored server that nobody else uses (a backup's
      verification: it may write to it), as the admin over the unix socket, within `timeout` seconds per
      statement. It returns what it checked (one line, recorded on the backup); damage found raises
      `PermanentError` naming it; a server that does not answer raises `TemporaryError`.
    """

    def strategies(self) -> BackupStrategies: ...

    def incremental_blocker(self, placement: Placement, admin_password: Secret) -> str | None: ...

    def backup(self, placement: Placement, admin_password: Secret, parent: ParentBackup | None) -> BackupRun: ...

    def archive(self, placement: Placement) -> ArchiveSpec | None: ...

    def restore(self, placement: Placement, chain: Sequence[ChainLink]) -> RestorePlan: ...

    def adopt(self, placement: Placement, old_admin: Secret, new_admin: Secret) -> None: ...

    def check(self, placement: Placement, admin_password: Secret, timeout: float) -> str: ...


class Snapshots(Protocol):
    """How a running server of one engine version is copied by a crash-consistent snapshot of its volume
    (the runtime freezes the filesystem and reflinks it) and made to run as the copy's own.

    - `quiesced()` holds the server as ready for a snapshot as it can be for the body of the context (the
      runtime's freeze and copy, a fraction of a second): what it wrote is on disk as far as the engine can
      say so (PostgreSQL: a CHECKPOINT first, so the copy's crash recovery replays little), and what it needs
      consistent across files is held (MariaDB: `BACKUP STAGE BLOCK_COMMIT`, the non-transactional tables
      flushed). Over the unix socket, short timeouts; TemporaryError when the server does not answer.
    - `fix_ups()` is pure: commands run as the copy's OS user in its data directory before its first start
      (a lock file of the source's server removed). `carried()` is pure: files of the instance's config
      directory the copy needs besides its volume (state kept beside the configuration: Redis's ACL file).
    - A copy is made the new instance's own by `Backups.adopt`, as a restore is.
    """

    def quiesced(self, placement: Placement, admin_password: Secret) -> AbstractContextManager[None]: ...

    def fix_ups(self, placement: Placement) -> tuple[CommandSpec, ...]: ...

    def carried(self) -> tuple[str, ...]: ...


class Replication(Protocol):
    """Replication of one engine version between members of a set (docs/replication.md).

    Obligations of an implementation:

    - No member ever sends a credential to a server whose identity it has not verified (the runtime's peer
      channel, or TLS with verification): a replica reconnecting to its primary's address while the primary is
      down hands nothing to whatever listens there.
    - `blocker()` is a live read (short timeout, over the unix socket): None when the server can be a
      replication source now, else the reason, for a tenant (a restart its settings need first).
    - `prepare_source()` makes the primary ready for exactly the replicas named (`slots`): what they log in
      as, what keeps the log they still need, and the configuration the runtime rewrote for them loaded
      (never a restart); idempotent, and it forgets former members'.
    - `seed()` is pure: the init commands, run as the new replica's OS user, that copy the primary's data into
      the replica's empty data directory from where it follows the primary.
    - `observe()` is a live read on the primary (short timeout): the state of each replica named by its slot,
      streaming or not (and why not, in a tenant's words), with its lag where the engine can tell.
    """

    def strategy(self) -> str: ...

    def uses_tls(self) -> bool:
        """Do members reach each other over TCP with TLS (certificates from the set's own CA and the set's
        replication password in their `Topology`), rather than over a channel the runtime authenticates?"""
        ...

    def carries_accounts(self) -> bool:
        """Does replication itself bring the primary's accounts to its replicas? When not (Redis's ACL users),
        Reddwarf copies them with `mirror_accounts` after every account write and every change of roles."""
        ...

    def mirror_accounts(self, source: Placement, placement: Placement, admin_password: Secret) -> None:
        """Make the accounts of the member at `placement` exactly those of its primary at `source` (live, both
        as the set's admin); nothing where replication carries them."""
        ...

    def blocker(self, placement: Placement, admin_password: Secret) -> str | None: ...

    def prepare_source(
        self, placement: Placement, admin_password: Secret, slots: tuple[str, ...], topology: Topology | None
    ) -> None:
        """`topology`: the primary's place in its set (its certificate and the set's credential where the
        engine uses them); None when the set was dissolved and it is a single instance again."""
        ...

    def seed(self, upstream: Placement, placement: Placement, slot: str) -> tuple[CommandSpec, ...]: ...

    def seed_from_copy(self, placement: Placement) -> tuple[CommandSpec, ...]:
        """Pure: the init commands, run as the new replica's OS user, that make a crash-consistent copy of its
        primary's volume (a snapshot taken after `prepare_source` made its slot) a replica's data: what the
        copy kept as a primary (its lock file, its slots, anything that would steer the replica) removed.
        Started as a replica, it recovers what the copy holds and follows the primary from there."""
        ...

    def seeds(self) -> frozenset[Seed]:
        """Where a new replica's data may come from: a snapshot of its primary (`seed_from_copy`), the engine's
        copy from the primary's server (`seed`: pg_basebackup; Redis syncs itself), a backup of the primary
        (`seed_from_backup`; MariaDB has no copy over the network: mariadb-backup reads the primary's files)."""
        ...

    def seed_from_backup(self, placement: Placement, metadata: Mapping[str, Any]) -> tuple[CommandSpec, ...]:
        """Pure: the init commands, run as the new replica's OS user once a full backup of its primary (taken
        after `prepare_source` made its slot; `metadata`: what the engine recorded of it) was restored into its
        data directory, that make it a replica's data, to follow the primary from where the backup ends (only
        for an engine whose `seeds()` hold the backup; PermanentError when the backup cannot seed one)."""
        ...

    def observe(
        self, placement: Placement, admin_password: Secret, replicas: Mapping[str, Placement]
    ) -> Mapping[str, ReplicaState]:
        """Live reads (short timeouts): the state of each replica of the primary at `placement`, keyed as
        `replicas` is (each replica's slot -> its placement), asked of the primary or of the replica itself,
        as the engine can tell best. The set shares one admin password."""
        ...

    def sync_reading(
        self, placement: Placement, admin_password: Secret, replicas: Mapping[str, Placement]
    ) -> SyncReading:
        """Live read (short timeouts) on the primary at `placement` of a set in synchronous mode, and of its
        replicas where the engine must ask them (`replicas`: each one's slot -> its placement)."""
        ...

    def apply_sync(self, placement: Placement, admin_password: Secret, topology: Topology) -> None:
        """Have the primary at `placement` wait for one of `topology.synchronous`'s replicas at each commit, or
        for none, as the files the runtime rewrote say; nothing else changes (no slot, no account). Returns
        once new commits wait as it says."""
        ...

    def promote(self, placement: Placement, admin_password: Secret) -> None:
        """Make the replica at `placement` a read-write server of its own, without a restart; idempotent (a
        server that is no replica any more is left alone). Returns once it takes writes."""
        ...

    def position_tool(self, placement: Placement) -> ToolSpec:
        """Pure: a tool, run as the instance's OS user while its server is stopped, whose output
        `stopped_position` reads."""
        ...

    def stopped_position(self, output: bytes) -> str | None:
        """Pure: the end of the log a server wrote before it stopped, from `position_tool`'s output; None when
        it did not stop cleanly (its log may end anywhere: nobody can say what a replica must have)."""
        ...

    def replayed(self, placement: Placement, admin_password: Secret, position: str) -> bool:
        """Live read on a replica: has it applied everything up to `position` (of its primary's log)? True
        once it is no replica any more."""
        ...

    def received(self, placement: Placement, admin_password: Secret) -> int:
        """Live read on a replica: how far its copy of its primary's log goes (what it received and kept, or
        replayed), as a number that orders the replicas of one set (the failover promotes the largest)."""
        ...

    def reload(self, placement: Placement, admin_password: Secret, topology: Topology) -> None:
        """Have the running server follow its upstream as `topology` says now (the files the runtime rewrote
        for it loaded), without a restart, and return once it does."""
        ...

    def before_rewind(self, upstream: Placement, admin_password: Secret) -> None:
        """Make the new primary `upstream` ready to be rewound from (PostgreSQL: a checkpoint, so that its control
        file names its new timeline); nothing where there is no rewind."""
        ...

    def rewind_tools(self, upstream: Placement, placement: Placement, set_id: str) -> tuple[ToolSpec, ...]:
        """Pure: tools, run in order as the OS user of a stopped former primary (fenced by a failover, its log
        possibly ahead of the new primary's), that make its data a copy it can follow `upstream` from."""
        ...

    def reseed_tools(self, upstream: Placement, placement: Placement, set_id: str, slot: str) -> tuple[ToolSpec, ...]:
        """Pure: tools, run in order as the stopped member's OS user, that replace its data with a new seed
        from `upstream` (what a rejoin falls back to when the rewind cannot be done)."""
        ...

    def cannot_rewind(self, failure: str) -> bool:
        """Pure: does a failed rewind tool's error output (`failure`) say the rewind cannot be done at all (the
        former primary no longer holds its log back to where the two diverged), with its data left as it was?
        Only then does a rejoin replace the data with a new seed; any other failure keeps the member fenced."""
        ...

    def demote_tool(self, placement: Placement) -> ToolSpec:
        """Pure: a tool, run as the instance's OS user while its server is stopped, that removes what it kept
        as a primary for its replicas (PostgreSQL: its slots), before it starts again as a replica."""
        ...


class BackupRun(Protocol):
    """One backup being taken: `prepare()`, then `tool` runs with every byte of its stdout passed through
    `observe()` (in order, as it is stored), then `finish()` with the files the tool left to collect.

    A WAL-based incremental has no tool (`tool` is None): after `prepare()` (which makes the server archive
    everything up to the backup's end) the control plane ships what is archived, asks `pieces()` which
    shipped files (and which byte ranges of them) the backup is made of, and streams them as a tar
    (members `<name>.<start>`) through `observe()`; `finish({})` follows."""

    @property
    def tool(self) -> ToolSpec | None: ...

    def pieces(self, shipped: Sequence[str]) -> Sequence[ArchivePiece]: ...

    def prepare(self) -> None: ...

    def observe(self, data: bytes) -> None: ...

    def finish(self, collected: Mapping[str, bytes]) -> BackupResult: ...
