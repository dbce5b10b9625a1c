"""Streaming replication of PostgreSQL (docs/replication.md): a physical slot per replica on its primary,
seeded by `pg_basebackup` with the slot, followed with `primary_conninfo` and `primary_slot_name`.

No credential exists for replication. A replica's server (and its seed) connects to the primary's own unix
socket as `reddwarf_replicator`, which the primary's pg_hba admits only by `peer` through an ident map that
names the OS users of the set's members (`config.render_pg_ident`); the replica's libpq checks with
`requirepeer` that the socket's server runs as the primary's OS user before it sends a byte. So a replica that
reconnects while its primary is down can hand nothing to whatever listens in its place (PostgreSQL 15's
walreceiver cannot refuse cleartext password authentication; here there is no password to hand over), and
a tenant's server cannot pose as a member: the kernel says who is at either end. The runtime lets members'
servers reach each other's socket directories (`WorkloadSpec.peer_group`) and nobody else's.

Everything the primary needs that cannot change without a restart is a default of every instance
(`config.pinned_settings`: the socket's permissions; `wal_level`, `max_wal_senders` and slots are
PostgreSQL's); `blocker()` names the restart an older server needs. `max_slot_wal_keep_size` bounds the WAL
a dead replica's slot can pin on its primary's volume.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import TemporaryError
from reddwarf.domain.replication import SLOT_PREFIX, ReplicaState, Seed, SyncReading, Topology
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import CommandSpec, Placement, ToolSpec
from reddwarf.engines.postgresql import admin
from reddwarf.engines.postgresql.admin import REPLICATOR
from reddwarf.engines.postgresql.config import REWIND_DATABASE

logger = logging.getLogger(__name__)

STRATEGY = "streaming"
SOCKET_PERMISSIONS = "0777"  # the socket directory (0700, or 0710 to the set's members) is the gate
STANDBY_SIGNAL = "standby.signal"
_RELOAD_WAIT = 10.0
_PROMOTE_WAIT = 60.0
# A synchronous replica this close behind its primary (bytes of WAL it has yet to flush) can be waited for
# without stalling commits: the set waits for replicas again only once one is.
SYNC_CATCH_UP = 1024 * 1024
_C_LOCALE = (("LC_ALL", "C"), ("TZ", "UTC"))


def _conninfo_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def conninfo(upstream: Placement, slot: str, dbname: str | None = None) -> str:
    """How a member reaches `upstream`: its unix socket, its OS user required, no password, no TLS."""
    pairs = (
        ("host", upstream.socket_dir), ("port", str(upstream.port)), ("user", REPLICATOR),
        ("requirepeer", upstream.os_user), ("application_name", slot), ("sslmode", "disable"),
        ("gssencmode", "disable"), ("passfile", "/dev/null"), *((("dbname", dbname),) if dbname else ()),
    )
    return " ".join(f"{key}={_conninfo_value(value)}" for key, value in pairs)


def forget_slots(data_dir: str) -> CommandSpec:
    """Remove Reddwarf's replication slots from a stopped server's data directory (a copy of a primary)."""
    return CommandSpec(argv=(
        "find", str(PurePosixPath(data_dir) / "pg_replslot"), "-mindepth", "1", "-maxdepth", "1",
        "-name", SLOT_PREFIX + "*", "-exec", "rm", "-rf", "--", "{}", "+",
    ))


def _disarm(data_dir: str) -> CommandSpec:
    """What a seed copied of its source that must not steer the replica: `postgresql.auto.conf` (it would
    override the `primary_conninfo` Reddwarf renders), signal files and the source's lock file. Reddwarf
    never uses ALTER SYSTEM; its own files are rewritten before every start."""
    root = PurePosixPath(data_dir)
    return CommandSpec(argv=("rm", "-f", "--", *(str(root / name) for name in (
        "postgresql.auto.conf", STANDBY_SIGNAL, "recovery.signal", "postmaster.pid"))))


def stopped_checkpoint(controldata: str) -> str | None:
    """From `pg_controldata`'s output (C locale): the latest checkpoint's location when the cluster state is
    "shut down" (a primary's clean stop), else None."""
    fields: dict[str, str] = {}
    for line in controldata.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    location = fields.get("Latest checkpoint location", "")
    if fields.get("Database cluster state") != "shut down" or not _LSN.fullmatch(location):
        return None
    return location


_LSN = re.compile(r"[0-9A-F]{1,8}/[0-9A-F]{1,8}")

# What pg_rewind (15 to 18, C locale) says when it cannot rewind: the WAL it needs is gone from the target.
_REWIND_IMPOSSIBLE = (
    "could not find previous WAL record at",
    "could not read WAL record at",
    "could not find common ancestor of the source and target cluster's timelines",
)
_READ_FAILURES = ("Input/output error", "Permission denied", "Stale file handle")

# pg_rewind's needs of a non-superuser on its source (PostgreSQL's documentation of pg_rewind).
_REWIND_FUNCTIONS = (
    "pg_catalog.pg_ls_dir(pg_catalog.text, pg_catalog.bool, pg_catalog.bool)",
    "pg_catalog.pg_stat_file(pg_catalog.text, pg_catalog.bool)",
    "pg_catalog.pg_read_binary_file(pg_catalog.text)",
    "pg_catalog.pg_read_binary_file(pg_catalog.text, pg_catalog.int8, pg_catalog.int8, pg_catalog.bool)",
)

_MEMBERSHIPS = (
    "SELECT r.rolname, m.rolname, g.rolname FROM pg_catalog.pg_auth_members a"
    " JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.roleid"
    " JOIN pg_catalog.pg_roles m ON m.oid OPERATOR(pg_catalog.=) a.member"
    " LEFT JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) a.grantor"
    " WHERE %s OPERATOR(pg_catalog.=) ANY(ARRAY[r.rolname, m.rolname])"
)


def _sole_owner_of_the_role(conn: psycopg.Connection[TupleRow]) -> bool:
    """No role is a member of the replication role, nor administers it, and it is a member of nothing: a tenant's
    root (CREATEROLE from PostgreSQL 16) that created it before Reddwarf did keeps no ADMIN OPTION on it (with
    which it could set it a password and stream as it, or drop it). Revokes until a look finds nothing: while
    a holder of ADMIN OPTION is left it may grant the role on, so a single pass could miss a grant made
    meanwhile; once none is left nobody but a superuser can change the role again. True when anything was
    revoked (the tenant had the role in hand)."""
    revoked = False
    for _ in range(_TAKE_ATTEMPTS):
        rows = conn.execute(_MEMBERSHIPS, (REPLICATOR,)).fetchall()
        if not rows:
            return revoked
        for role, member, grantor in rows:
            # A grant whose grantor is gone (a superuser's, before 16) is the bootstrap superuser's to revoke.
            by = sql.SQL("") if grantor is None else sql.SQL(" GRANTED BY {}").format(sql.Identifier(str(grantor)))
            conn.execute(sql.SQL("REVOKE {} FROM {}{} CASCADE").format(
                sql.Identifier(str(role)), sql.Identifier(str(member)), by))
            logger.warning("revoked membership of %s in %s (granted by %s): the replication role is Reddwarf's",
                           member, role, grantor)
        revoked = True
    raise TemporaryError("the memberships of the replication role keep changing")


_TAKE_ATTEMPTS = 20
_ROLE_OID = "(SELECT oid FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) %s::pg_catalog.name)"
_OWNED_IN = (
    "SELECT DISTINCT d.datname, d.datallowconn FROM pg_catalog.pg_shdepend s"
    " LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.dbid"
    " WHERE s.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass"
    " AND s.deptype OPERATOR(pg_catalog.=) 'o' AND s.refobjid OPERATOR(pg_catalog.=) " + _ROLE_OID
)
_SETTINGS_IN = (
    "SELECT d.datname FROM pg_catalog.pg_db_role_setting s"
    " LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.setdatabase"
    " WHERE s.setrole OPERATOR(pg_catalog.=) " + _ROLE_OID
)
_ROLE_ATTRIBUTES = ("LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOBYPASSRLS PASSWORD NULL "
                    "CONNECTION LIMIT -1")


def _take_role(where: admin.Target, conn: psycopg.Connection[TupleRow]) -> None:
    """The replication role, Reddwarf's alone, before it may read the data directory's files
    (`_REWIND_FUNCTIONS`). Made by the admin (a superuser: nobody administers it) when missing. A role of that
    name a tenant made first (PostgreSQL 16+) is taken back, in this order: every membership revoked, so that
    no tenant role can change it any more; then its attributes set (no password); its settings reset; what it
    owns handed to `reddwarf_orphans` (where root reaches it anyway: a SECURITY DEFINER function of the role
    would otherwise read `pg_authid`'s file for the tenant) and its privileges and default privileges dropped;
    and, since a session that did SET ROLE (through any chain of memberships) or logged in as it keeps it,
    every session of a role that is not a superuser ended."""
    role = sql.Identifier(REPLICATOR)
    for _ in range(_TAKE_ATTEMPTS):
        if conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) %s",
                        (REPLICATOR,)).fetchone() is not None:
            break
        try:
            conn.execute(sql.SQL("CREATE ROLE {} WITH " + _ROLE_ATTRIBUTES).format(role))
            return
        except psycopg.errors.DuplicateObject:
            continue  # made meanwhile: taken back below
    tainted = _sole_owner_of_the_role(conn)
    conn.execute(sql.SQL("ALTER ROLE {} WITH " + _ROLE_ATTRIBUTES).format(role))
    for (database,) in conn.execute(_SETTINGS_IN, (REPLICATOR,)).fetchall():
        statement = "ALTER ROLE {} RESET ALL" if database is None else "ALTER ROLE {} IN DATABASE {} RESET ALL"
        conn.execute(sql.SQL(statement).format(role, sql.Identifier(str(database or ""))))
        logger.warning("reset settings a tenant gave the replication role (database %s)", database or "all")
        tainted = True
    owned = conn.execute(_OWNED_IN, (REPLICATOR,)).fetchall()
    if owned:
        admin.ensure_orphans_role(conn)
        # Objects live per database (shared ones, such as a database it owns, go with the session's database).
        # A database that takes no connections keeps them: the file functions are granted in `REWIND_DATABASE`
        # only (a function's privileges are the database's own), so nothing there can reach them.
        databases = {str(name) if name is not None else where.dbname for name, allowed in owned if allowed is not False}
        for database in sorted(databases | {where.dbname}):
            with admin.session(replace(where, dbname=database)) as there:
                there.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(role, sql.Identifier(admin.ORPHANS_ROLE)))
                there.execute(sql.SQL("DROP OWNED BY {}").format(role))
            logger.warning("objects a tenant made the replication role own in database %s now belong to %s",
                           database, admin.ORPHANS_ROLE)
        tainted = True
    if tainted:
        ended = conn.execute(
            "SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(a.pid)) FROM pg_catalog.pg_stat_activity a"
            " JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.usesysid"
            " WHERE a.backend_type OPERATOR(pg_catalog.=) 'client backend' AND NOT r.rolsuper"
            " AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()"
        ).fetchone()
        logger.warning("a tenant had the replication role in hand: %s sessions of non-superusers ended",
                       ended[0] if ended else 0)


def _drop_slot(conn: psycopg.Connection[TupleRow], slot: str) -> None:
    """Drop a former member's slot, ending the session that still streams from it (a replica being deleted)."""
    deadline = time.monotonic() + _RELOAD_WAIT
    while True:
        row = conn.execute(
            "SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) %s",
            (slot,),
        ).fetchone()
        if row is None:
            return
        if row[0] is None:
            conn.execute("SELECT pg_catalog.pg_drop_replication_slot(%s)", (slot,))
            logger.info("dropped replication slot %s of a former member", slot)
            return
        if time.monotonic() >= deadline:
            raise TemporaryError(f"replication slot {slot} is still in use")
        conn.execute("SELECT pg_catalog.pg_terminate_backend(%s)", (row[0],))
        time.sleep(0.05)


class PostgresqlReplication:
    """Replication of one PostgreSQL version, as the admin over the unix socket."""

    def __init__(self, version: DatastoreVersion, admin_user: str) -> None:
        self._version = version
        self._admin = admin_user

    def strategy(self) -> str:
        return STRATEGY

    def uses_tls(self) -> bool:
        """No: members reach each other's unix sockets, admitted by `peer` (the kernel says who connected)."""
        return False

    def carries_accounts(self) -> bool:
        """Yes: roles and their passwords are rows of the data it replicates."""
        return True

    def mirror_accounts(self, source: Placement, placement: Placement, admin_password: Secret) -> None:
        """Nothing: replication brings them."""

    def blocker(self, placement: Placement, admin_password: Secret) -> str | None:
        """None when the running server can be a replication source now; else why not, for a tenant."""
        where = admin.target(placement, self._admin, admin_password, timeout=5.0)
        with admin.session(where) as conn, admin.refusals("read its replication settings"):
            row = conn.execute(
                "SELECT pg_catalog.current_setting('unix_socket_permissions'),"
                " pg_catalog.current_setting('max_wal_senders')::int,"
                " pg_catalog.current_setting('max_replication_slots')::int, pg_catalog.pg_is_in_recovery()"
            ).fetchone()
        assert row is not None
        permissions, senders, slots, in_recovery = row
        if in_recovery:
            return "it is a replica itself"
        if str(permissions) != SOCKET_PERMISSIONS or int(senders) < 1 or int(slots) < 1:
            return ("its server was started before replication was supported here and needs one restart first "
                    "(POST .../action {\"restart\": {}})")
        return None

    def prepare_source(
        self, placement: Placement, admin_password: Secret, slots: tuple[str, ...], topology: Topology | None = None
    ) -> None:
        """Make the primary at `placement` ready for exactly the replicas of `slots`: the replication role, a
        slot for each (reserving WAL from now on), Reddwarf's slots of former members dropped, and the
        configuration files the runtime rewrote (the ident map of the members) loaded. Idempotent."""
        where = admin.target(placement, self._admin, admin_password, timeout=10.0)
        with admin.session(where) as conn, admin.refusals("prepare replication"):
            # Its own writes never wait for a synchronous replica: this is what changes the list it waits on.
            conn.execute("SET synchronous_commit TO local")
            _take_role(where, conn)
            for function in _REWIND_FUNCTIONS:  # what a former primary's pg_rewind reads here with
                conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION " + function + " TO {}").format(
                    sql.Identifier(REPLICATOR)))
            present = [str(name) for (name,) in conn.execute(
                "SELECT slot_name FROM pg_catalog.pg_replication_slots"
                " WHERE pg_catalog.starts_with(slot_name::pg_catalog.text, %s)", (SLOT_PREFIX,)
            )]
            for slot in slots:
                if slot not in present:
                    conn.execute("SELECT pg_catalog.pg_create_physical_replication_slot(%s, true)", (slot,))
            for slot in present:
                if slot not in slots:
                    _drop_slot(conn, slot)
            loaded = conn.execute("SELECT pg_catalog.pg_conf_load_time()").fetchone()
            conn.execute("SELECT pg_catalog.pg_reload_conf()")
        self._wait_reloaded(where, loaded[0] if loaded else None)

    def _wait_reloaded(self, where: admin.Target, before: object) -> None:
        """Until a new session sees the configuration loaded after `before` (the postmaster re-reads it
        when signalled, and new sessions inherit what it read)."""
        deadline = time.monotonic() + _RELOAD_WAIT
        while True:
            with admin.session(where) as conn, admin.refusals("read when its configuration was loaded"):
                row = conn.execute("SELECT pg_catalog.pg_conf_load_time() > %s", (before,)).fetchone()
            if row is not None and row[0]:
                return
            if time.monotonic() >= deadline:
                raise TemporaryError("PostgreSQL has not loaded its new configuration yet")
            time.sleep(0.05)

    def observe(
        self, placement: Placement, admin_password: Secret, replicas: Mapping[str, Placement]
    ) -> dict[str, ReplicaState]:
        """Each replica's state as its primary sees it: its slot (kept, or lost when the replica fell further
        behind than `max_slot_wal_keep_size`) and its walsender (streaming, the bytes of WAL it has yet to
        replay, and PostgreSQL's own replay lag: null once it has caught up). Asked of the primary alone."""
        slots = tuple(replicas)
        where = admin.target(placement, self._admin, admin_password, timeout=5.0)
        with admin.session(where) as conn, admin.refusals("read its replicas' state"):
            rows = conn.execute(
                "SELECT s.slot_name, s.active, s.wal_status, r.state,"
                " pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), r.replay_lsn)::bigint,"
                " pg_catalog.date_part('epoch', r.replay_lag)"
                " FROM pg_catalog.pg_replication_slots s"
                " LEFT JOIN pg_catalog.pg_stat_replication r ON r.pid OPERATOR(pg_catalog.=) s.active_pid"
                " WHERE s.slot_name::pg_catalog.text OPERATOR(pg_catalog.=) ANY(%s)", (list(slots),)
            ).fetchall()
        found = {str(row[0]): row for row in rows}
        states: dict[str, ReplicaState] = {}
        for slot in slots:
            row = found.get(slot)
            if row is None:
                states[slot] = ReplicaState(False, detail="its source keeps no slot for it: it must be seeded again")
                continue
            _name, active, wal_status, state, lag_bytes, lag_seconds = row
            if wal_status == "lost":
                states[slot] = ReplicaState(False, detail="its source no longer holds the WAL it needs (more than "
                                            "max_slot_wal_keep_size behind): it must be seeded again")
            elif not active or state is None:
                states[slot] = ReplicaState(False, detail="it is not connected to its source")
            else:
                behind = None if lag_bytes is None else max(0, int(lag_bytes))
                seconds = float(lag_seconds) if lag_seconds is not None else (0.0 if behind == 0 else None)
                states[slot] = ReplicaState(state == "streaming", behind, seconds,
                                            "" if state == "streaming" else f"it is connected but {state}")
        return states

    def sync_reading(
        self, placement: Placement, admin_password: Secret, replicas: Mapping[str, Placement]
    ) -> SyncReading:
        """Asked of the primary alone: `synchronous_standby_names` as a new session sees it (the postmaster's,
        whose reload the checkpointer passes on to every waiting commit), its WAL write position, and its
        walsenders of the set's slots: those streaming, and the furthest flush of those in the quorum."""
        where = admin.target(placement, self._admin, admin_password, timeout=2.0)
        with admin.session(where) as conn, admin.refusals("read its synchronous replication"):
            row = conn.execute(
                "SELECT pg_catalog.current_setting('synchronous_standby_names') OPERATOR(pg_catalog.<>) '',"
                " pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), '0/0')::bigint,"
                " count(r.pid) FILTER (WHERE r.state OPERATOR(pg_catalog.=) 'streaming'),"
                " max(pg_catalog.pg_wal_lsn_diff(r.flush_lsn, '0/0')) FILTER (WHERE r.state"
                " OPERATOR(pg_catalog.=) 'streaming' AND r.sync_state OPERATOR(pg_catalog.=) ANY('{sync,quorum}'))"
                "::bigint,"
                " min(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), r.flush_lsn)) FILTER (WHERE"
                " r.state OPERATOR(pg_catalog.=) 'streaming')::bigint"
                " FROM (SELECT 1) one LEFT JOIN pg_catalog.pg_stat_replication r"
                " ON r.application_name OPERATOR(pg_catalog.=) ANY(%s)", (list(replicas),)
            ).fetchone()
        if row is None:
            raise TemporaryError("PostgreSQL says nothing of its synchronous replication")
        waits, position, streaming, synced, behind = row
        return SyncReading(waits=bool(waits), position=int(position), streaming=int(streaming or 0),
                           synced=None if synced is None else int(synced),
                           caught_up=behind is not None and int(behind) <= SYNC_CATCH_UP)

    def apply_sync(self, placement: Placement, admin_password: Secret, topology: Topology) -> None:
        """`synchronous_standby_names` as postgresql.conf now says: loaded (`reload`)."""
        self.reload(placement, admin_password, topology)

    def promote(self, placement: Placement, admin_password: Secret) -> None:
        """`pg_promote()`, waiting until the server has left recovery (it removes standby.signal itself)."""
        where = admin.target(placement, self._admin, admin_password, timeout=_PROMOTE_WAIT + 5.0)
        with admin.session(where) as conn, admin.refusals("promote the replica"):
            row = conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()
            if row is None or not row[0]:
                return
            done = conn.execute("SELECT pg_catalog.pg_promote(true, %s)", (int(_PROMOTE_WAIT),)).fetchone()
        if done is None or not done[0]:
            raise TemporaryError(f"PostgreSQL did not finish its promotion within {_PROMOTE_WAIT:.0f} s")
        logger.info("instance %s: promoted out of recovery", placement.instance_id)

    def position_tool(self, placement: Placement) -> ToolSpec:
        """`pg_controldata` of the stopped server: its state and its last checkpoint."""
        return ToolSpec(argv=(str(PurePosixPath(self._version.bin_dir) / "pg_controldata"), "-D", placement.data_dir),
                        env=_C_LOCALE, description="read the stopped server's last checkpoint")

    def stopped_position(self, output: bytes) -> str | None:
        """The location of the shutdown checkpoint of a server that stopped cleanly as a primary (its last WAL
        record: a replica that has replayed it has everything the primary ever acknowledged); None otherwise
        (it crashed, or it was not a primary)."""
        return stopped_checkpoint(output.decode("utf-8", "replace"))

    def replayed(self, placement: Placement, admin_password: Secret, position: str) -> bool:
        """Has the replica replayed the WAL record that starts at `position` (its replay location is the end of
        the last record it replayed)? True once it left recovery."""
        where = admin.target(placement, self._admin, admin_password, timeout=5.0)
        with admin.session(where) as conn, admin.refusals("read how far it has replayed"):
            row = conn.execute(
                "SELECT pg_catalog.pg_is_in_recovery(),"
                " pg_catalog.pg_last_wal_replay_lsn() OPERATOR(pg_catalog.>) %s::pg_catalog.pg_lsn", (position,)
            ).fetchone()
        return row is not None and (not row[0] or bool(row[1]))

    def received(self, placement: Placement, admin_password: Secret) -> int:
        """The larger of the WAL the replica received and flushed and the WAL it replayed (its walreceiver
        may not have run since it started), as a byte position."""
        where = admin.target(placement, self._admin, admin_password, timeout=5.0)
        with admin.session(where) as conn, admin.refusals("read how much WAL it has"):
            row = conn.execute(
                "SELECT pg_catalog.pg_wal_lsn_diff(GREATEST(pg_catalog.pg_last_wal_receive_lsn(),"
                " pg_catalog.pg_last_wal_replay_lsn(), CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL"
                " ELSE pg_catalog.pg_current_wal_lsn() END), '0/0')::bigint"
            ).fetchone()
        if row is None or row[0] is None:
            raise TemporaryError("PostgreSQL says nothing of the WAL it has")
        return int(row[0])

    def reload(self, placement: Placement, admin_password: Secret, topology: Topology) -> None:
        """`pg_reload_conf()`, waiting until a new session sees the files loaded (a replica's walreceiver
        reconnects to a changed `primary_conninfo` on its own)."""
        where = admin.target(placement, self._admin, admin_password, timeout=10.0)
        with admin.session(where) as conn, admin.refusals("reload its configuration"):
            loaded = conn.execute("SELECT pg_catalog.pg_conf_load_time()").fetchone()
            conn.execute("SELECT pg_catalog.pg_reload_conf()")
        self._wait_reloaded(where, loaded[0] if loaded else None)

    def demote_tool(self, placement: Placement) -> ToolSpec:
        """The former primary's slots removed from its stopped data directory: as a replica nobody streams
        from it, and each slot would pin its WAL."""
        return ToolSpec(argv=forget_slots(placement.data_dir).argv, description="remove a former primary's slots")

    def before_rewind(self, upstream: Placement, admin_password: Secret) -> None:
        """A CHECKPOINT on the new primary: pg_rewind reads the source's timeline from its control file, which a
        promotion updates only at its first checkpoint (requested, not waited for). Rewound from a primary
        promoted a moment ago, a former primary would be told "no rewind required" and keep what it wrote after
        the two diverged (it then cannot follow: "requested starting point ... is not in this server's
        history")."""
        where = admin.target(upstream, self._admin, admin_password, timeout=_PROMOTE_WAIT + 5.0)
        with admin.session(where) as conn, admin.refusals("checkpoint the new primary before a rewind"):
            conn.execute("CHECKPOINT")

    def rewind_tools(self, upstream: Placement, placement: Placement, set_id: str) -> tuple[ToolSpec, ...]:
        """`pg_rewind` of the stopped former primary from its new primary (over the new primary's socket as
        the replication role, admitted by peer: no password; crash recovery of a killed server first, with
        its own configuration file), then what the rewind copied or left that must not steer it: the new
        primary's `postgresql.auto.conf`, signal and lock files, and its own former slots."""
        bin_dir = PurePosixPath(self._version.bin_dir)
        source = conninfo(upstream, "reddwarf_rewind", dbname=REWIND_DATABASE)
        config = str(PurePosixPath(placement.config_dir) / "postgresql.conf")
        return (
            ToolSpec(argv=(str(bin_dir / "pg_rewind"), "-D", placement.data_dir, "--source-server", source,
                           "--config-file", config, "--progress"),
                     env=_C_LOCALE, description="pg_rewind from the new primary", peer_group=set_id),
            ToolSpec(argv=_disarm(placement.data_dir).argv, description="remove what the rewind copied"),
            self.demote_tool(placement),
        )

    def cannot_rewind(self, failure: str) -> bool:
        """pg_rewind's own words, on its last error line, when the target's WAL does not reach back to the last
        common checkpoint or the two timelines share no history: it stops while it reads, before it changes a
        file. Never when a file could not be read for another reason than its absence (a disk error, a
        permission: the WAL may be there)."""
        errors = [line for line in failure.splitlines() if line.startswith("pg_rewind: error:")]
        if not errors or any(words in failure for words in _READ_FAILURES):
            return False
        return any(words in errors[-1] for words in _REWIND_IMPOSSIBLE)

    def reseed_tools(self, upstream: Placement, placement: Placement, set_id: str, slot: str) -> tuple[ToolSpec, ...]:
        """When a rewind cannot be done (`cannot_rewind`): its data directory emptied and seeded again from the
        primary, as a new replica is, then flushed to its volume (the seed does not sync) before it starts."""
        wipe = ToolSpec(argv=("find", placement.data_dir, "-mindepth", "1", "-delete"),
                        description="empty the data directory for a new seed")
        flush = ToolSpec(argv=("sync", "--file-system", placement.data_dir), description="flush the new seed")
        return (wipe, *(ToolSpec(argv=command.argv, env=command.env, description=PurePosixPath(command.argv[0]).name,
                                 peer_group=set_id)
                        for command in self.seed(upstream, placement, slot)), flush)

    def seed_from_copy(self, placement: Placement) -> tuple[CommandSpec, ...]:
        """A snapshot of the primary, taken after its slot for this replica was made (so the primary keeps all
        WAL from before the copy): its slots and what would steer the replica removed. Without a backup label
        PostgreSQL first replays the copy's own WAL as a crash recovery, is consistent at its end, and only
        then streams from the primary through the slot."""
        return (forget_slots(placement.data_dir), _disarm(placement.data_dir))

    def seeds(self) -> frozenset[Seed]:
        return frozenset({Seed.SNAPSHOT, Seed.NETWORK, Seed.BACKUP})

    def seed_from_backup(self, placement: Placement, metadata: Mapping[str, Any]) -> tuple[CommandSpec, ...]:
        """A restored full backup of the primary (a base backup with its WAL, begun after the slot was made, so
        the primary kept every later record): the same as a snapshot's. With its backup label it replays the
        backup's WAL to the backup's end, then streams from the primary through the slot."""
        return self.seed_from_copy(placement)

    def seed(self, upstream: Placement, placement: Placement, slot: str) -> tuple[CommandSpec, ...]:
        """The replica's init, run as its OS user: a base backup of `upstream` through the member's slot, the
        WAL streamed alongside, into its empty data directory (the runtime syncs it afterwards)."""
        bin_dir = PurePosixPath(self._version.bin_dir)
        return (
            CommandSpec(
                argv=(
                    str(bin_dir / "pg_basebackup"), "-D", placement.data_dir, "-d", conninfo(upstream, slot),
                    "-X", "stream", "-S", slot, "-c", "fast", "--no-sync", "-w",
                ),
                env=(("LC_ALL", "C.UTF-8"), ("TZ", "UTC")),
                timeout=6 * 3600.0,
            ),
            _disarm(placement.data_dir),
        )
