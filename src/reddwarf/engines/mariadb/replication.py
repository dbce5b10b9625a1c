"""GTID replication of MariaDB (docs/replication.md): every member writes a binary log with GTIDs in strict
mode under a server id of its own; a replica follows its primary with `MASTER_USE_GTID=slave_pos` from the
position its own binary log ends at, over TCP with TLS.

No credential reaches a server whose identity was not verified. A replica connects to its primary's address
with `MASTER_SSL_VERIFY_SERVER_CERT=1` against its set's own CA (`Topology.tls`; never the installation's,
never another set's): the primary's certificate must chain to that CA and name the address it listens on
(measured: MariaDB 10.11 checks the address), or the handshake fails before the replication account's
password is sent. The primary's account `reddwarf_replication` requires a client certificate of the same CA
(`REQUIRE X509` against the server's `ssl_ca`, the set's CA) besides the set's password, so a certificate of
another set, or of a former holder of an address, never passes either way.

Whom a replica follows is rendered into `follow.sql`, its `init_file`, at every start (the store says who
follows whom, as PostgreSQL's `primary_conninfo`): its replication position set from its own binary log's end
(the copy of its primary it was seeded from, or what it applied and logged itself: `log_slave_updates`), then
`CHANGE MASTER TO` and `START SLAVE`. A primary starts no replication thread (`skip_slave_start`). A replica
is `read_only` and its tenant's root lacks `READ_ONLY ADMIN`; Reddwarf's own writes on it are never binary
logged (`admin.session`), so it never holds a transaction its primary lacks.

MariaDB has no rewind: a former primary fenced by a failover starts as a replica of the new one, and when it
wrote what the new primary never received, strict mode refuses to follow it (the replication watch shows
why: its data is kept as it was, for an operator to recover). A switchover loses nothing: the primary's clean
stop leaves its binary log's end in `binlog.state`, and the replica is promoted only once it applied up to it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.replication import ReplicaState, Seed, SyncReading, Topology
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import CommandSpec, Placement, ToolSpec
from reddwarf.engines.mariadb import admin, config, passwords

logger = logging.getLogger(__name__)

STRATEGY = "gtid"
_PROMOTE_WAIT = 60
# A replica this many transactions behind its primary can be waited for without stalling commits.
SYNC_CATCH_UP = 100
_GTID = re.compile(r"^(\d+)-(\d+)-(\d+)$")
# What a primary's copy holds that would steer a replica: its own replication state, if it ever was one.
_REPLICATION_STATE = ("master.info", "relay-log.info", "multi-master.info")


def _literal(value: str) -> str:
    """A SQL string literal (quotes and backslashes escaped; NUL refused)."""
    if "\0" in value:
        raise ValueError("a SQL string cannot hold NUL")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def change_master(upstream: Placement, placement: Placement, credential: Secret) -> str:
    """`CHANGE MASTER TO` the primary at `upstream`, as the replication account, its certificate verified
    against the set's CA and its address; the replica's own certificate presented."""
    paths = config.layout(placement)
    return (
        f"CHANGE MASTER TO MASTER_HOST={_literal(upstream.address)}, MASTER_PORT={int(upstream.port)}, "
        f"MASTER_USER={_literal(config.REPLICATION_USER)}, MASTER_PASSWORD={_literal(credential.reveal())}, "
        f"MASTER_SSL=1, MASTER_SSL_CA={_literal(paths.tls_ca)}, MASTER_SSL_CERT={_literal(paths.tls_cert)}, "
        f"MASTER_SSL_KEY={_literal(paths.tls_key)}, MASTER_SSL_VERIFY_SERVER_CERT=1, "
        "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1"
    )


def render_follow_sql(upstream: Placement, placement: Placement, credential: Secret) -> str:
    """A replica's `init_file`, run by its server at every start before it takes a connection: its position
    taken from its own binary log (what it holds), whom it follows, and replication started. One statement a
    line (as MariaDB reads an init file)."""
    return "\n".join((
        "SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos;",
        change_master(upstream, placement, credential) + ";",
        "START SLAVE;",
    )) + "\n"


def gtid_seqs(position: str) -> dict[int, int]:
    """A GTID position ("0-51-10,1-3-7") as each domain's highest sequence number."""
    found: dict[int, int] = {}
    for part in position.replace("\n", ",").split(","):
        match = _GTID.match(part.strip())
        if match is not None:
            domain, seq = int(match.group(1)), int(match.group(3))
            found[domain] = max(found.get(domain, 0), seq)
    return found


def stopped_position(state: str) -> str | None:
    """From a cleanly stopped server's `binlog.state` (the last GTID of each domain and server id, written at
    its clean shutdown and removed at its next start): the position its binary log ends at, one GTID per
    domain; None when there is no such file (it did not stop cleanly) or it names nothing."""
    last: dict[int, tuple[int, int]] = {}
    for line in state.splitlines():
        match = _GTID.match(line.strip())
        if match is None:
            continue
        domain, server, seq = (int(group) for group in match.groups())
        if domain not in last or seq > last[domain][1]:
            last[domain] = (server, seq)
    if not last:
        return None
    return ",".join(f"{domain}-{server}-{seq}" for domain, (server, seq) in sorted(last.items()))


def _set_semi_sync(cursor: admin.Cursor, waits: bool) -> None:
    """Whether the primary's commits wait for a replica's acknowledgment; switched off, those waiting go on."""
    cursor.execute(f"SET GLOBAL rpl_semi_sync_master_enabled = {'ON' if waits else 'OFF'}")


class MariadbReplication:
    """GTID replication of one MariaDB version, as the admin over each member's unix socket."""

    def __init__(self, admin_user: str) -> None:
        self._admin = admin_user

    def strategy(self) -> str:
        return STRATEGY

    def uses_tls(self) -> bool:
        """Yes: a replica reaches its primary over TCP, both ends verified against the set's own CA."""
        return True

    def _where(self, placement: Placement, admin_password: Secret, timeout: float = 5.0) -> admin.Target:
        return admin.target(placement, self._admin, admin_password, timeout=timeout)

    def carries_accounts(self) -> bool:
        """Yes: accounts and their passwords are rows of the data it replicates."""
        return True

    def mirror_accounts(self, source: Placement, placement: Placement, admin_password: Secret) -> None:
        """Nothing: replication brings them."""

    def blocker(self, placement: Placement, admin_password: Secret) -> str | None:
        """None when the running server can be a replication source now; else why not, for a tenant."""
        paths = config.layout(placement)
        with admin.session(self._where(placement, admin_password)) as cursor, admin.refusals(
            "read its replication settings"
        ):
            cursor.execute("SELECT @@GLOBAL.log_bin, @@GLOBAL.have_ssl, @@GLOBAL.ssl_cert, @@GLOBAL.read_only")
            row = cursor.fetchone()
            status = _slave_status(cursor)
        assert row is not None
        log_bin, have_ssl, ssl_cert, read_only = row
        if status is not None or int(read_only):
            return "it is a replica itself"
        if not int(log_bin) or str(have_ssl) != "YES" or str(ssl_cert) != paths.tls_cert:
            return ("its server was started before replication was supported here and needs one restart first "
                    "(POST .../action {\"restart\": {}})")
        return None

    def prepare_source(
        self, placement: Placement, admin_password: Secret, slots: tuple[str, ...], topology: Topology | None
    ) -> None:
        """The certificate files the runtime rewrote for the set loaded (`FLUSH SSL`: not logged), the
        replication account with the set's password, a certificate of the set's CA required, and whether its
        commits wait for a replica (semi-synchronous: `topology.synchronous`). The account is not logged: a
        commit that waits for a replica must never be what lets the replicas in (every primary makes its own
        as it becomes one: this runs then). MariaDB keeps no per-replica state on a primary: `slots` says
        nothing here. Idempotent."""
        with admin.session(self._where(placement, admin_password, timeout=10.0)) as cursor, admin.refusals(
            "prepare replication"
        ):
            cursor.execute("FLUSH LOCAL SSL")
            # Commits wait for a replica's acknowledgment, or not, as the set stands (my.cnf says the same at
            # the next start); switched off, the commits waiting are released.
            _set_semi_sync(cursor, topology is not None and bool(topology.synchronous))
            cursor.execute("SET SESSION sql_log_bin = 0")
            who = config.account(config.REPLICATION_USER, "%")
            if topology is None or topology.credential is None:
                cursor.execute(f"DROP USER IF EXISTS {who}")
                return
            hashed = passwords.native_hash(topology.credential.reveal())
            cursor.execute(f"CREATE USER IF NOT EXISTS {who} IDENTIFIED BY PASSWORD '{hashed}' REQUIRE X509")
            cursor.execute(f"ALTER USER {who} IDENTIFIED BY PASSWORD '{hashed}' REQUIRE X509")
            cursor.execute(f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {who}")
            cursor.execute(f"GRANT REPLICATION SLAVE ON *.* TO {who}")

    def sync_reading(
        self, placement: Placement, admin_password: Secret, replicas: Mapping[str, Placement]
    ) -> SyncReading:
        """Semi-synchronous replication as the primary says (`rpl_semi_sync_master_enabled`: commits wait;
        `Rpl_semi_sync_master_status` ON with a semi-synchronous client: they are acknowledged by one) and
        as each replica says (how far its copy of the log goes, `received`). Positions are GTID sequences."""
        with admin.session(self._where(placement, admin_password, timeout=2.0)) as cursor, admin.refusals(
            "read its semi-synchronous replication"
        ):
            cursor.execute("SELECT @@GLOBAL.rpl_semi_sync_master_enabled, @@GLOBAL.gtid_binlog_pos")
            row = cursor.fetchone()
            cursor.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('Rpl_semi_sync_master_status',"
                           " 'Rpl_semi_sync_master_clients')")
            status = {str(name).lower(): str(value) for name, value in cursor.fetchall()}
        if row is None:
            raise TemporaryError("MariaDB says nothing of its semi-synchronous replication")
        position = sum(gtid_seqs(str(row[1] or "")).values())
        held: list[int] = []
        for there in replicas.values():
            try:
                held.append(self._streaming_position(there, admin_password))
            except (TemporaryError, PermanentError):
                continue
        acknowledging = (status.get("rpl_semi_sync_master_status") == "ON"
                         and int(status.get("rpl_semi_sync_master_clients", "0") or 0) >= 1)
        return SyncReading(waits=bool(int(row[0])), position=position, streaming=len(held),
                           synced=max(held) if held and acknowledging else None,
                           caught_up=any(position - h <= SYNC_CATCH_UP for h in held))

    def apply_sync(self, placement: Placement, admin_password: Secret, topology: Topology) -> None:
        """`rpl_semi_sync_master_enabled` as the set stands (my.cnf says the same at the next start); switched
        off, the commits waiting are released."""
        with admin.session(self._where(placement, admin_password)) as cursor, admin.refusals(
            "set its semi-synchronous replication"
        ):
            _set_semi_sync(cursor, bool(topology.synchronous))

    def _streaming_position(self, placement: Placement, admin_password: Secret) -> int:
        """How far a replica whose I/O thread is connected has the log (TemporaryError: it is not connected)."""
        with admin.session(self._where(placement, admin_password, timeout=1.0)) as cursor, admin.refusals(
            "read its replication state"
        ):
            status = _slave_status(cursor)
        if status is None or str(status.get("Slave_IO_Running")) != "Yes":
            raise TemporaryError(f"instance {placement.instance_id} does not stream from its primary")
        return sum(gtid_seqs(str(status.get("Gtid_IO_Pos") or "")).values())

    def observe(
        self, placement: Placement, admin_password: Secret, replicas: Mapping[str, Placement]
    ) -> dict[str, ReplicaState]:
        """Each replica's own account of its replication (`SHOW SLAVE STATUS`): both threads running, its
        delay in seconds, and the bytes of its primary's current binary log it has yet to apply when both
        are on the same file."""
        end: tuple[str, int] | None = None
        try:
            with admin.session(self._where(placement, admin_password)) as cursor, admin.refusals(
                "read its binary log position"
            ):
                cursor.execute("SHOW MASTER STATUS")
                row = cursor.fetchone()
                end = None if row is None else (str(row[0]), int(row[1]))
        except TemporaryError:
            end = None
        states: dict[str, ReplicaState] = {}
        for slot, there in replicas.items():
            try:
                with admin.session(self._where(there, admin_password)) as cursor, admin.refusals(
                    "read its replication state"
                ):
                    status = _slave_status(cursor)
            except (TemporaryError, PermanentError):
                states[slot] = ReplicaState(False, detail="it does not answer")
                continue
            states[slot] = _state(status, end)
        return states

    def promote(self, placement: Placement, admin_password: Secret) -> None:
        """Stop receiving, apply everything received (`MASTER_GTID_WAIT` on what the I/O thread wrote to the
        relay log), forget the primary and take writes; idempotent (a server that follows nobody and takes
        writes is left alone)."""
        with admin.session(self._where(placement, admin_password, timeout=_PROMOTE_WAIT + 5.0)) as cursor, \
                admin.refusals("promote the replica"):
            status = _slave_status(cursor)
            if status is not None:
                cursor.execute("STOP SLAVE IO_THREAD")
                status = _slave_status(cursor) or status
                received = str(status.get("Gtid_IO_Pos") or "")
                if received:
                    cursor.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (received, _PROMOTE_WAIT))
                    waited = cursor.fetchone()
                    if waited is None or int(waited[0]) != 0:
                        raise TemporaryError(f"the replica has not applied what it received ({received}) within "
                                             f"{_PROMOTE_WAIT} s")
                cursor.execute("STOP SLAVE")
                cursor.execute("RESET SLAVE ALL")
            cursor.execute("SET GLOBAL read_only = 0")
        logger.info("instance %s: promoted (follows nobody, takes writes)", placement.instance_id)

    def position_tool(self, placement: Placement) -> ToolSpec:
        """The stopped server's `binlog.state` (only a clean shutdown leaves it); nothing when it is missing."""
        state = str(PurePosixPath(config.layout(placement).datadir) / (config.BINLOG + ".state"))
        return ToolSpec(argv=("/bin/sh", "-c", 'cat -- "$1" 2>/dev/null || true', "sh", state),
                        description="read the stopped server's last GTIDs")

    def stopped_position(self, output: bytes) -> str | None:
        return stopped_position(output.decode("utf-8", "replace"))

    def replayed(self, placement: Placement, admin_password: Secret, position: str) -> bool:
        """Has the replica applied every transaction up to `position` (GTIDs)? True once it follows nobody."""
        with admin.session(self._where(placement, admin_password)) as cursor, admin.refusals(
            "read how far it has applied"
        ):
            if _slave_status(cursor) is None:
                return True
            cursor.execute("SELECT MASTER_GTID_WAIT(%s, 0)", (position,))
            row = cursor.fetchone()
        return row is not None and int(row[0]) == 0

    def received(self, placement: Placement, admin_password: Secret) -> int:
        """How far the replica's copy of its primary's log goes: the highest GTID sequence of each domain among
        what it received, applied and logged, summed (one domain here: Reddwarf never changes it)."""
        with admin.session(self._where(placement, admin_password)) as cursor, admin.refusals(
            "read how much of the log it has"
        ):
            status = _slave_status(cursor)
            cursor.execute("SELECT @@GLOBAL.gtid_slave_pos, @@GLOBAL.gtid_binlog_pos")
            row = cursor.fetchone()
        seqs: dict[int, int] = {}
        for position in (str((status or {}).get("Gtid_IO_Pos") or ""), *(str(v or "") for v in (row or ()))):
            for domain, seq in gtid_seqs(position).items():
                seqs[domain] = max(seqs.get(domain, 0), seq)
        return sum(seqs.values())

    def reload(self, placement: Placement, admin_password: Secret, topology: Topology) -> None:
        """Follow `topology.upstream` now (its certificate files the runtime rewrote loaded): the threads stopped,
        `CHANGE MASTER TO` it from what this replica applied, started again."""
        if topology.upstream is None or topology.credential is None:
            raise PermanentError(f"Instance {placement.instance_id} follows no primary to reload.")
        with admin.session(self._where(placement, admin_password, timeout=10.0)) as cursor, admin.refusals(
            "follow its new primary"
        ):
            cursor.execute("FLUSH LOCAL SSL")
            cursor.execute("STOP SLAVE")
            cursor.execute(change_master(topology.upstream, placement, topology.credential))
            cursor.execute("START SLAVE")

    def demote_tool(self, placement: Placement) -> ToolSpec:
        """Nothing to remove: a primary keeps no state for its replicas, and its `follow.sql` makes it a replica."""
        return ToolSpec(argv=("/bin/true",), description="nothing a former primary kept for replicas")

    def before_rewind(self, upstream: Placement, admin_password: Secret) -> None:
        """Nothing: there is no rewind."""

    def rewind_tools(self, upstream: Placement, placement: Placement, set_id: str) -> tuple[ToolSpec, ...]:
        """None: MariaDB cannot undo what a former primary wrote; strict mode refuses to follow on a divergence."""
        return ()

    def cannot_rewind(self, failure: str) -> bool:
        return False

    def reseed_tools(self, upstream: Placement, placement: Placement, set_id: str, slot: str) -> tuple[ToolSpec, ...]:
        raise PermanentError("MariaDB members are not seeded again in place: delete it and create a new replica.")

    def seed_from_copy(self, placement: Placement) -> tuple[CommandSpec, ...]:
        """A snapshot of the primary, taken under its backup stage (InnoDB and the binary log agree): whatever
        replication state the copy held (the primary may have been a replica once) removed. At its first start
        it recovers, takes its position from the binary log it copied, and follows the primary from there."""
        datadir = PurePosixPath(config.layout(placement).datadir)
        return (CommandSpec(argv=(
            "find", str(datadir), "-maxdepth", "1", "(", *_either(_REPLICATION_STATE), "-o", "-name",
            config.RELAY_LOG + ".*", "-o", "-name", config.BINLOG + ".state", ")", "-type", "f", "-delete",
        )),)

    def seeds(self) -> frozenset[Seed]:
        return frozenset({Seed.SNAPSHOT, Seed.BACKUP})

    def seed_from_backup(self, placement: Placement, metadata: Mapping[str, Any]) -> tuple[CommandSpec, ...]:
        """A restored full backup of the primary holds no binary log, only where it ended: the GTID position
        mariadb-backup read under `BACKUP STAGE BLOCK_COMMIT` (`metadata["gtid"]`, parsed defensively by the
        backup). Written as `binlog.state`, the server takes it as its binary log's state at its first start,
        when it finds no binary log (measured, 10.11); from there on it is a snapshot's copy: it follows its
        primary from its binary log's end."""
        gtid = metadata.get("gtid")
        parts = gtid.split(",") if isinstance(gtid, str) and gtid else []
        if not isinstance(gtid, str) or any(_GTID.match(part) is None for part in parts):
            raise PermanentError("The backup records no readable GTID position; a replica cannot follow from it.")
        # Empty: the primary had logged no transaction yet, and the replica follows from its first.
        datadir = PurePosixPath(config.layout(placement).datadir)
        state = "".join(f"{part}\n" for part in parts)
        write = CommandSpec(argv=("sh", "-c", 'rm -f -- "$2" && printf "%s" "$1" > "$2"', "sh", state,
                                  str(datadir / (config.BINLOG + ".state"))))
        return (*self.seed_from_copy(placement), *((write,) if parts else ()))

    def seed(self, upstream: Placement, placement: Placement, slot: str) -> tuple[CommandSpec, ...]:
        """MariaDB is seeded from a copy-on-write snapshot or a backup of its primary, never over the network
        (mariadb-backup reads the primary's files, which the replica's OS user never may). Never chosen
        (`seeds`): a command that says so."""
        message = ("MariaDB replicas are seeded from a copy-on-write snapshot or a backup of their primary, "
                   "not over the network")
        return (CommandSpec(argv=("/bin/sh", "-c", 'echo "$1" >&2; exit 1', "sh", message)),)


def _either(names: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for name in names:
        out += [*(("-o",) if out else ()), "-name", name]
    return out


def _slave_status(cursor: admin.Cursor) -> dict[str, Any] | None:
    """`SHOW SLAVE STATUS` as a mapping, None when the server follows nobody."""
    cursor.execute("SHOW SLAVE STATUS")
    row = cursor.fetchone()
    if row is None:
        return None
    names = [str(column[0]) for column in cursor.description or ()]
    return dict(zip(names, row, strict=False))


def _state(status: dict[str, Any] | None, end: tuple[str, int] | None) -> ReplicaState:
    if status is None:
        return ReplicaState(False, detail="it follows no primary")
    io, sql = str(status.get("Slave_IO_Running") or ""), str(status.get("Slave_SQL_Running") or "")
    io_error, sql_error = str(status.get("Last_IO_Error") or ""), str(status.get("Last_SQL_Error") or "")
    if sql != "Yes":
        return ReplicaState(False, detail=f"it stopped applying its source's log: {sql_error or 'stopped'}")
    if io != "Yes":
        why = io_error or ("it is connecting to its source" if io == "Connecting" else "it is not connected")
        return ReplicaState(False, detail=f"it is not connected to its source: {why}")
    behind = status.get("Seconds_Behind_Master")
    lag_bytes = None
    if end is not None and str(status.get("Relay_Master_Log_File") or "") == end[0]:
        lag_bytes = max(0, end[1] - int(status.get("Exec_Master_Log_Pos") or 0))
    return ReplicaState(True, lag_bytes, None if behind is None else float(behind))

