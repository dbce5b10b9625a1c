"""Replication of Redis (docs/replication.md "Redis"): `replicaof` its primary's TLS port, as the ACL user
`reddwarf_replication`, with a certificate of the set's own CA.

No credential reaches a server whose identity was not verified. A replica's server connects to its primary's
replication port (`tls-port`, the tenant port plus `config.TLS_PORT_OFFSET`) with `tls-replication`, trusting
only its set's CA (`tls-ca-cert-file`). Redis checks the chain but not the address (measured: docs), so the CA
must be the set's alone: a certificate of any other CA fails the handshake before `masteruser`/`masterauth`
are sent. The primary asks every client of that port for a certificate of the same CA (`tls-auth-clients`).

A replica synchronises itself (a full sync, then the stream): it needs no seed but an empty data directory.
Redis does not replicate ACL users: `mirror_accounts` makes a member's users its primary's (hashes only),
after every account write on the primary and at every change of the set's roles. A replica refuses writes to
every client (`replica-read-only`), root included; REPLICAOF, CONFIG SET and ACL are never a tenant's.

A switchover loses nothing: Redis 7 stopped by SIGTERM pauses writes and waits for its replicas to take
everything (`shutdown-timeout`), then saves an RDB whose `repl-offset` is where its stream ends; the replica
is promoted (`REPLICAOF NO ONE`) once its own offset reached it. There is no rewind: a fenced former primary
starting as a replica of the new one is resynchronised from it, and what it alone had is dropped (as
`pg_rewind` drops it for PostgreSQL).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import redis

from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.replication import ReplicaState, Seed, SyncReading, Topology
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import CommandSpec, Placement, ToolSpec
from reddwarf.engines.redis import admin, config

logger = logging.getLogger(__name__)

STRATEGY = "replicaof"
_CLEAN_EXIT = "ready to exit, bye bye"
_MIRROR_PASSES = 5
_REPL_OFFSET = re.compile(r"AUX FIELD repl-offset = '(\d+)'")
# Prints the RDB's fields when the server's log ends with its clean exit; nothing otherwise.
_POSITION_SCRIPT = (
    'last=$(grep -v "^[[:space:]]*$" -- "$1" 2>/dev/null | tail -n 1); '
    'case "$last" in *"' + _CLEAN_EXIT + '"*) exec "$2" "$3" ;; esac'
)


def _info(client: admin.CommandClient) -> dict[str, str]:
    """`INFO replication` as a mapping of strings (redis-py parses it into a dict already; a raw reply is split)."""
    reply = admin.command(client, "INFO", "replication")
    if isinstance(reply, dict):
        return {admin.text(key): admin.text(value) for key, value in reply.items()}
    raw = admin.text(reply)
    found: dict[str, str] = {}
    for line in raw.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            found[key.strip()] = value.strip()
    return found


def _failed(action: str, exc: redis.RedisError) -> TemporaryError | PermanentError:
    if admin.retryable(exc):
        return TemporaryError(f"Redis could not {action} for now: {exc}", delay=2.0)
    return PermanentError(f"Redis refused to {action}: {exc}")


def stopped_position(output: str) -> str | None:
    """The `repl-offset` of the RDB a cleanly stopped primary saved (`position_tool` prints its fields only when
    the server's log ends with its clean exit); None otherwise."""
    match = _REPL_OFFSET.search(output)
    return None if match is None else match.group(1)


def acl_lines(reply: object) -> dict[str, tuple[str, ...]]:
    """`ACL LIST`'s reply as each user's rules (`user <name> <rule> ...`, hashes only)."""
    users: dict[str, tuple[str, ...]] = {}
    for line in reply if isinstance(reply, list) else ():
        words = admin.text(line).split(" ")
        if len(words) >= 2 and words[0] == "user":
            users[words[1]] = tuple(words[2:])
    return users


class RedisReplication:
    """Replication of Redis, as the admin over each member's unix socket."""

    def __init__(self, admin_user: str, bin_dir: str) -> None:
        self._admin = admin_user
        self._check_rdb = str(PurePosixPath(bin_dir) / "redis-check-rdb")  # the version's own

    def strategy(self) -> str:
        return STRATEGY

    def uses_tls(self) -> bool:
        """Yes: a replica reaches its primary's TLS port, both ends certified by the set's own CA."""
        return True

    def carries_accounts(self) -> bool:
        """No: Redis does not replicate ACL users (measured); `mirror_accounts` copies them."""
        return False

    def _where(self, placement: Placement, admin_password: Secret, timeout: float = 5.0) -> admin.Target:
        return admin.target(placement, self._admin, admin_password, timeout=timeout)

    def blocker(self, placement: Placement, admin_password: Secret) -> str | None:
        with admin.session(self._where(placement, admin_password)) as client:
            try:
                port = admin.as_dict(admin.command(client, "CONFIG", "GET", "tls-port")).get("tls-port")
                role = _info(client).get("role")
            except redis.RedisError as exc:
                raise _failed("read its replication settings", exc) from None
        if role != "master":
            return "it is a replica itself"
        if admin.text(port or "0") != str(config.tls_port(placement)):
            return ("its server was started before replication was supported here and needs one restart first "
                    "(POST .../action {\"restart\": {}})")
        return None

    @staticmethod
    def _reload_tls(client: admin.CommandClient, placement: Placement) -> None:
        """Setting a TLS file (to the same path) has Redis read every TLS file again: the set's certificates
        the runtime wrote are in use from now on, without a restart."""
        admin.command(client, "CONFIG", "SET", "tls-ca-cert-file",
                      str(PurePosixPath(placement.config_dir) / config.TLS_CA))

    def prepare_source(
        self, placement: Placement, admin_password: Secret, slots: tuple[str, ...], topology: Topology | None
    ) -> None:
        """The set's certificates loaded and the replication user made with the set's password (dropped when the
        set is gone: `topology` None), saved to the ACL file. Redis keeps no per-replica state: `slots` says
        nothing here. Idempotent."""
        with admin.session(self._where(placement, admin_password, timeout=10.0)) as client:
            try:
                self._reload_tls(client, placement)
                if topology is None or topology.credential is None:
                    admin.command(client, "ACL", "DELUSER", config.REPLICATION_USER)
                else:
                    admin.command(client, "ACL", "SETUSER", config.REPLICATION_USER,
                                  *config.replication_rules(topology.credential.reveal()))
            except redis.RedisError as exc:
                raise _failed("prepare replication", exc) from None
            admin.save_acl(client)

    def mirror_accounts(self, source: Placement, placement: Placement, admin_password: Secret) -> None:
        """The member's tenant users made exactly its primary's (each user's rules as `ACL LIST` gives them:
        hashes, never a password), users its primary does not have dropped, and saved to its ACL file.

        Reddwarf's own users are never copied: the admin is the set's already (and a detach rotates it on the
        leaving member), `default` is fixed, and the replication user is set by `prepare_source` on whoever is
        primary. Only a member that follows `source` now is written (another is left as it is). Copies may run
        concurrently (an account operation and a root enable): each one, after writing, reads the primary's
        users again and writes again until they did not change meanwhile, so the last one to finish leaves the
        primary's current users."""
        last: dict[str, tuple[str, ...]] | None = None
        for _ in range(_MIRROR_PASSES):
            wanted = self._tenant_users(source, admin_password)
            if wanted == last:
                return
            with admin.session(self._where(placement, admin_password)) as client:
                try:
                    info = _info(client)
                    if info.get("role") != "slave" or info.get("master_host") != source.address:
                        # Not (or not yet) following `source`: a copy now could undo a detach's or another
                        # primary's; it gets them at the set's next change once it follows.
                        logger.info("instance %s does not follow %s now: its users were not copied",
                                    placement.instance_id, source.address)
                        return
                    present = {name: rules for name, rules in acl_lines(admin.command(client, "ACL", "LIST")).items()
                               if name not in self._reserved()}
                    for name, rules in wanted.items():
                        if present.get(name) != rules:
                            admin.command(client, "ACL", "SETUSER", name, "reset", *rules)
                    for name in present.keys() - wanted.keys():
                        admin.command(client, "ACL", "DELUSER", name)
                except redis.RedisError as exc:
                    raise _failed("copy its primary's users", exc) from None
                admin.save_acl(client)
            last = wanted
        raise TemporaryError("the primary's users kept changing while they were copied")

    def _reserved(self) -> tuple[str, ...]:
        return (self._admin, config.DEFAULT_USER, config.REPLICATION_USER)

    def _tenant_users(self, source: Placement, admin_password: Secret) -> dict[str, tuple[str, ...]]:
        with admin.session(self._where(source, admin_password)) as client:
            try:
                found = acl_lines(admin.command(client, "ACL", "LIST"))
            except redis.RedisError as exc:
                raise _failed("list its users", exc) from None
        return {name: rules for name, rules in found.items() if name not in self._reserved()}

    def apply_sync(self, placement: Placement, admin_password: Secret, topology: Topology) -> None:
        raise PermanentError("Redis 7.0 replicates asynchronously only.")

    def sync_reading(
        self, placement: Placement, admin_password: Secret, replicas: Mapping[str, Placement]
    ) -> SyncReading:
        raise PermanentError("Redis 7.0 replicates asynchronously only.")

    def observe(
        self, placement: Placement, admin_password: Secret, replicas: Mapping[str, Placement]
    ) -> dict[str, ReplicaState]:
        """Each replica's own account (`INFO replication`): its link to its primary up and no full sync under
        way; its lag in bytes against the primary's offset (Redis tells no lag in seconds: 0 once caught up)."""
        offset: int | None = None
        try:
            with admin.session(self._where(placement, admin_password)) as client:
                offset = int(_info(client).get("master_repl_offset", "0"))
        except (TemporaryError, PermanentError, redis.RedisError, ValueError):
            offset = None
        states: dict[str, ReplicaState] = {}
        for slot, there in replicas.items():
            try:
                with admin.session(self._where(there, admin_password)) as client:
                    info = _info(client)
            except (TemporaryError, PermanentError, redis.RedisError):
                states[slot] = ReplicaState(False, detail="it does not answer")
                continue
            states[slot] = _state(info, offset)
        return states

    def promote(self, placement: Placement, admin_password: Secret) -> None:
        """`REPLICAOF NO ONE`: it takes writes at once (its data is what it received); idempotent."""
        with admin.session(self._where(placement, admin_password, timeout=10.0)) as client:
            try:
                if _info(client).get("role") != "master":
                    admin.command(client, "REPLICAOF", "NO", "ONE")
            except redis.RedisError as exc:
                raise _failed("promote the replica", exc) from None
        logger.info("instance %s: promoted (follows nobody, takes writes)", placement.instance_id)

    def position_tool(self, placement: Placement) -> ToolSpec:
        """The fields of the RDB a stopped server saved, printed only when its log ends with its clean exit."""
        log = str(PurePosixPath(placement.log_dir) / config.LOG_FILE)
        rdb = str(PurePosixPath(placement.data_dir) / config.RDB_FILE)
        return ToolSpec(argv=("/bin/sh", "-c", _POSITION_SCRIPT, "sh", log, self._check_rdb, rdb),
                        description="read where the stopped server's replication stream ends")

    def stopped_position(self, output: bytes) -> str | None:
        return stopped_position(output.decode("utf-8", "replace"))

    def replayed(self, placement: Placement, admin_password: Secret, position: str) -> bool:
        """Has the replica taken its primary's stream up to offset `position`? True once it follows nobody."""
        with admin.session(self._where(placement, admin_password)) as client:
            try:
                info = _info(client)
            except redis.RedisError as exc:
                raise _failed("read its replication offset", exc) from None
        if info.get("role") == "master":
            return True
        return int(info.get("slave_repl_offset") or info.get("master_repl_offset") or "-1") >= int(position)

    def received(self, placement: Placement, admin_password: Secret) -> int:
        with admin.session(self._where(placement, admin_password)) as client:
            try:
                info = _info(client)
            except redis.RedisError as exc:
                raise _failed("read its replication offset", exc) from None
        return int(info.get("slave_repl_offset") or info.get("master_repl_offset") or "0")

    def reload(self, placement: Placement, admin_password: Secret, topology: Topology) -> None:
        """Follow `topology.upstream` now: the set's certificates loaded, its login set, `REPLICAOF` it (a
        partial resync where the new primary's history continues this replica's)."""
        if topology.upstream is None or topology.credential is None:
            raise PermanentError(f"Instance {placement.instance_id} follows no primary to reload.")
        with admin.session(self._where(placement, admin_password, timeout=10.0)) as client:
            try:
                self._reload_tls(client, placement)
                admin.command(client, "CONFIG", "SET", "masteruser", config.REPLICATION_USER)
                admin.command(client, "CONFIG", "SET", "masterauth", topology.credential.reveal())
                admin.command(client, "REPLICAOF", topology.upstream.address, str(config.tls_port(topology.upstream)))
            except redis.RedisError as exc:
                raise _failed("follow its new primary", exc) from None

    def demote_tool(self, placement: Placement) -> ToolSpec:
        return ToolSpec(argv=("/bin/true",), description="nothing a former primary kept for replicas")

    def before_rewind(self, upstream: Placement, admin_password: Secret) -> None:
        """Nothing: there is no rewind."""

    def rewind_tools(self, upstream: Placement, placement: Placement, set_id: str) -> tuple[ToolSpec, ...]:
        """None: a former primary started as a replica is resynchronised by its new primary."""
        return ()

    def cannot_rewind(self, failure: str) -> bool:
        return False

    def reseed_tools(self, upstream: Placement, placement: Placement, set_id: str, slot: str) -> tuple[ToolSpec, ...]:
        return ()

    def seed_from_copy(self, placement: Placement) -> tuple[CommandSpec, ...]:
        """The copy's data removed (the replica takes its primary's by a full sync); its ACL file, carried with
        the snapshot, stays."""
        return (CommandSpec(argv=("find", placement.data_dir, "-mindepth", "1", "-delete")),)

    def seeds(self) -> frozenset[Seed]:
        return frozenset({Seed.SNAPSHOT, Seed.NETWORK})

    def seed_from_backup(self, placement: Placement, metadata: Mapping[str, Any]) -> tuple[CommandSpec, ...]:
        """Never chosen (`seeds`): a replica takes its primary's whole data set by a full sync when it starts."""
        raise PermanentError("A Redis replica is not seeded from a backup: it copies its primary when it starts.")

    def seed(self, upstream: Placement, placement: Placement, slot: str) -> tuple[CommandSpec, ...]:
        """Nothing: a replica synchronises itself from its primary when it starts."""
        return ()


def _state(info: dict[str, str], primary_offset: int | None) -> ReplicaState:
    if info.get("role") != "slave":
        return ReplicaState(False, detail="it follows no primary")
    if info.get("master_link_status") != "up":
        since = info.get("master_link_down_since_seconds", "")
        return ReplicaState(False, detail="it is not connected to its source"
                            + (f" (for {since} s)" if since and since != "-1" else ""))
    if info.get("master_sync_in_progress") == "1":
        return ReplicaState(False, detail="it is connected but still synchronising")
    offset = int(info.get("slave_repl_offset") or "0")
    behind = None if primary_offset is None else max(0, primary_offset - offset)
    return ReplicaState(True, behind, 0.0 if behind == 0 else None)
