"""Replication end to end (docs/replication.md): a real `reddwarf server`, a PostgreSQL instance with a tenant's
rows, and two replicas asked for the way troveclient asks (name and `replica_of` only). The replicas stream from
their source: rows, databases and users made on the source after they existed appear on them; a tenant (root
included) cannot write on them; the source was not restarted for them; it cannot be deleted while it has
replicas (403); deleting a replica drops its slot on the source, and deleting the last one leaves a single
instance again."""

from __future__ import annotations

import errno
import grp
import pwd
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from reddwarf.client import Instance, ReddwarfClient, UserRequest
from reddwarf.client.errors import ReddwarfAPIError
from reddwarf.domain.secret import ADMIN_SECRET, Secret
from reddwarf.runtimes.local.paths import instance_key
from reddwarf.store.database import Database
from tests.e2e.test_cli_e2e import cli
from tests.support.engine_harness import OsUser, throwaway_os_user
from tests.support.server import (
    ACTIVE_TIMEOUT,
    DELETE_TIMEOUT,
    ReddwarfProcesses,
    processes_of,
    running_plane,
    signal_processes,
    wait_for,
)
from tests.support.squatter import start_squatter

USER, PASSWORD = "app", "replicate me 'please'"
LATER_USER, LATER_PASSWORD = "late", "came-after-the-replicas"
PG_BIN = "/usr/lib/postgresql/15/bin"


@pytest.fixture(scope="module")
def reddwarf() -> Iterator[ReddwarfProcesses]:
    with running_plane("replication", "127.0.174.0/24", REDDWARF_REPLICATION_CHECK_INTERVAL="0.5") as procs:
        yield procs


def _sql(instance: Instance, sql: str, *, user: str = USER, password: str = PASSWORD, dbname: str = "app",
         direct: ReddwarfProcesses | None = None) -> Any:
    """`sql` on `instance` through its address, or (`direct`: the plane that runs it) through its own unix socket:
    once a set has switched over, its founder's address is the set's writer endpoint and reaches the primary."""
    assert instance.address is not None and instance.port is not None
    host = instance.address if direct is None else str(direct.state_dir / "s" / instance_key(instance.id))
    with psycopg.connect(host=host, port=instance.port, user=user, password=password, dbname=dbname,
                         connect_timeout=5, autocommit=True) as conn:
        cursor = conn.execute(sql)
        if cursor.description is None:
            return None
        row = cursor.fetchone()
        if row is None:
            return None
        return row[0] if len(row) == 1 else tuple(row)


def _source(client: ReddwarfClient, name: str) -> Instance:
    created = client.create_instance(name, "1", 1, datastore="postgresql", databases=["app"],
                                     users=[UserRequest(name=USER, password=Secret(PASSWORD), databases=("app",))])
    source = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
    _sql(source, "create table t (id int primary key, v text)")
    _sql(source, "insert into t select g, md5(g::text) from generate_series(1, 20000) g returning 1")
    return source


@contextmanager
def _writer(source: Instance) -> Iterator[list[int]]:
    """Rows inserted one by one into `w` on the source until the block ends; the ids acknowledged."""
    _sql(source, "create table w (id int primary key)")
    acknowledged: list[int] = []
    stop = threading.Event()

    def write() -> None:
        assert source.address is not None and source.port is not None
        with psycopg.connect(host=source.address, port=source.port, user=USER, password=PASSWORD, dbname="app",
                             connect_timeout=5, autocommit=True) as conn:
            while not stop.is_set():
                next_id = len(acknowledged) + 1
                conn.execute("insert into w values (%s)", (next_id,))
                acknowledged.append(next_id)
                stop.wait(0.01)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield acknowledged
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def _eventually_on(replica: Instance, sql: str, expected: Any, *, direct: ReddwarfProcesses | None = None,
                   **login: str) -> None:
    def arrived() -> bool:
        try:
            return bool(_sql(replica, sql, direct=direct, **login) == expected)
        except psycopg.OperationalError:
            return False  # a user not replicated yet cannot log in

    wait_for(arrived, 30, f"{sql!r} to give {expected!r} on replica {replica.id}")


def test_replicas_stream_from_their_source_and_refuse_every_write(
    reddwarf: ReddwarfProcesses, unique_name: str
) -> None:
    with reddwarf.tenant() as client:
        source = _source(client, unique_name)
        started = _sql(source, "select pg_postmaster_start_time()::text")
        # Writes go on while the replicas are made (from a snapshot of the source, taken between two of them):
        # every acknowledged one must reach every replica, the last ones through the slot made before the copy.
        with _writer(source) as acknowledged:
            first = client.create_replicas(unique_name, source.id, 2)
            assert first.name == f"{unique_name}-1" and first.status == "BUILD" and first.source_id == source.id
            shown = client.get_instance(source.id)
            assert len(shown.replica_ids) == 2 and first.id in shown.replica_ids
            replicas = [client.wait_for_instance(i, timeout=ACTIVE_TIMEOUT) for i in shown.replica_ids]
        assert len(acknowledged) > 10, "the writer wrote too little to tell"
        for replica in replicas:
            assert any(f"seeded from a snapshot of instance {source.id}" == e.get("message")
                       for e in _events(reddwarf, replica.id))
            _eventually_on(replica, "select count(*) from w", len(acknowledged))
            assert _sql(replica, "select min(id), max(id) from w") == (min(acknowledged), max(acknowledged))
        assert sorted(r.name for r in replicas) == [f"{unique_name}-1", f"{unique_name}-2"]
        for replica in replicas:
            assert replica.source_id == source.id and replica.flavor is not None and replica.flavor.id == "1"
            assert replica.volume is not None and replica.volume.size == 1
            assert (replica.address, replica.port) != (source.address, source.port)
            assert _sql(replica, "select count(*), sum(length(v)) from t") == (20000, 640000)
            assert _sql(replica, "select pg_is_in_recovery()") is True
        # The source was never restarted for its replicas.
        assert _sql(source, "select pg_postmaster_start_time()::text") == started
        # Each replica's state and lag, as the replication watch recorded them (an extension of the view).
        for replica in replicas:
            health = wait_for(lambda r=replica: _replication(client, r.id).get("observed") and _replication(
                client, r.id), 30, "the replication watch to record the replica")
            assert health["role"] == "replica" and health["state"] == "streaming", health
            assert isinstance(health["lag_bytes"], int) and health["lag_seconds"] is not None
        shown = client.get_instance(source.id)
        assert shown.replication == {"role": "primary", "mode": "async", "auto_failover": True}
        # The set's writer endpoint is the address the source had; the reader endpoint one of its own.
        assert shown.writer is not None and (shown.writer.address, shown.writer.port) == (source.address, source.port)
        assert shown.reader is not None and shown.reader.address not in {source.address, *(r.address for r in replicas)}

        # Made on the source after the replicas existed: rows, a database, a user.
        _sql(source, "insert into t values (-1, 'late') returning 1")
        client.accounts.create_databases(source.id, ["later"])
        client.accounts.create_user(source.id, LATER_USER, Secret(LATER_PASSWORD), databases=("app",))
        root = client.accounts.enable_root(source.id)
        for replica in replicas:
            _eventually_on(replica, "select v from t where id = -1", "late")
            _eventually_on(replica, "select count(*) from pg_database where datname = 'later'", 1)
            _eventually_on(replica, "select current_user::text", LATER_USER, user=LATER_USER, password=LATER_PASSWORD)
            # Nobody writes on a replica, root included (it is the source's root, replicated).
            _eventually_on(replica, "select 1", 1, user=root.name, password=root.password.reveal(), dbname="postgres")
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                _sql(replica, "insert into t values (-2, 'no') returning 1", user=root.name,
                     password=root.password.reveal())
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                _sql(replica, "create table mine (i int)")
        # Account changes on a replica are refused (they belong on its source), and so is its root.
        with pytest.raises(ReddwarfAPIError) as refused:
            client.accounts.create_user(replicas[0].id, "nope", Secret("pw-pw-pw-pw"))
        assert refused.value.status == 422 and "read-only" in str(refused.value)
        with pytest.raises(ReddwarfAPIError) as refused:
            client.accounts.enable_root(replicas[0].id)
        assert refused.value.status == 422

        # A source with replicas cannot be deleted (Trove's 403); a replica can, and takes its slot along.
        with pytest.raises(ReddwarfAPIError) as forbidden:
            client.delete_instance(source.id)
        assert forbidden.value.status == 403
        slots = "select count(*) from pg_replication_slots where slot_name like 'reddwarf\\_%'"
        assert _sql(source, slots) == 2
        client.delete_instance(replicas[0].id)
        client.wait_for_delete(replicas[0].id, timeout=DELETE_TIMEOUT)
        wait_for(lambda: _sql(source, slots) == 1, 30, "the deleted replica's slot to be dropped")
        assert client.get_instance(source.id).replica_ids == [replicas[1].id]
        _sql(source, "insert into t values (-3, 'still') returning 1")
        _eventually_on(replicas[1], "select v from t where id = -3", "still")

        client.delete_instance(replicas[1].id)
        client.wait_for_delete(replicas[1].id, timeout=DELETE_TIMEOUT)
        assert client.get_instance(source.id).replica_ids == []
        wait_for(lambda: _sql(source, slots) == 0, 30, "the last replica's slot to be dropped")
        client.delete_instance(source.id)
        client.wait_for_delete(source.id, timeout=DELETE_TIMEOUT)


def test_the_cli_makes_a_replica(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    with reddwarf.tenant() as client:
        source = _source(client, unique_name)
        made = cli(reddwarf, "instance", "create", f"{unique_name}-r", "--replica-of", source.id, "--wait")
        assert made["status"] == "ACTIVE" and made["replica_of"]["id"] == source.id
        replica = client.get_instance(made["id"])
        assert _sql(replica, "select count(*) from t") == 20000
        for instance_id in (replica.id, source.id):
            client.delete_instance(instance_id)
            client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)


@pytest.fixture(scope="module")
def squatter_user() -> Iterator[OsUser]:
    with throwaway_os_user() as user:
        yield user


_CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    print("connected")
except OSError as exc:
    print(exc.errno)
"""


def _as(user: str, argv: list[str], groups: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
    entry = pwd.getpwnam(user)
    supplementary = f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"
    return subprocess.run(
        ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", supplementary, "--", *argv],
        capture_output=True, text=True, cwd="/", env={"PATH": "/usr/bin:/bin"}, timeout=30, check=False,
    )


def _replication(client: ReddwarfClient, instance_id: str) -> dict[str, Any]:
    found = client.get_instance(instance_id).replication
    assert isinstance(found, dict), found
    return found


def _events(reddwarf: ReddwarfProcesses, instance_id: str) -> list[dict[str, Any]]:
    with reddwarf.client() as http:
        events = http.get(f"/instances/{instance_id}/events").json()["events"]
    assert isinstance(events, list)
    return events


def _walreceiver_failures(reddwarf: ReddwarfProcesses, replica_id: str) -> int:
    log = reddwarf.state_dir / "instances" / replica_id / "volume" / "log" / "server.log"
    return log.read_text(errors="replace").count("could not connect to the primary server")


def test_only_the_sets_members_reach_the_source_and_no_credential_goes_to_its_address(
    reddwarf: ReddwarfProcesses, unique_name: str, squatter_user: OsUser
) -> None:
    with reddwarf.tenant() as client:
        source = _source(client, unique_name)
        stranger = client.create_instance(f"{unique_name}-x", "1", 1, datastore="postgresql")
        # Held down on purpose below: this set does not fail over by itself (docs/failover.md).
        replica = client.wait_for_instance(
            client.create_replicas(f"{unique_name}-r", source.id, auto_failover=False).id, timeout=ACTIVE_TIMEOUT)
        client.wait_for_instance(stranger.id, timeout=ACTIVE_TIMEOUT)
        socket_path = str(reddwarf.state_dir / "s" / instance_key(source.id) / ".s.PGSQL.5432")
        set_group = grp.getgrnam(f"{reddwarf.user_prefix}set-{instance_key(source.id)}").gr_gid
        member, outsider = reddwarf.os_user(replica.id), reddwarf.os_user(stranger.id)
        python = ["/usr/bin/python3", "-c", _CONNECT, socket_path]
        # Another tenant's server cannot even reach the source's socket; a member's can, with its set's group.
        assert _as(outsider, python).stdout.strip() == str(errno.EACCES)
        assert _as(member, python).stdout.strip() == str(errno.EACCES)
        assert _as(member, python, (set_group,)).stdout.strip() == "connected"
        # And past the directory, the replication role admits only the members' OS users (peer, no password).
        psql = [str(Path(PG_BIN) / "psql"), "-w", "-X", "-c", "IDENTIFY_SYSTEM",
                f"host={Path(socket_path).parent} port=5432 user=reddwarf_replicator dbname=x replication=true"]
        refused = _as(outsider, psql, (set_group,))
        assert refused.returncode != 0 and "Peer authentication failed" in refused.stderr
        assert _as(member, psql, (set_group,)).returncode == 0

        # The source dies and someone else takes its address: the replica retries its source and hands that
        # listener nothing (it never replicates over TCP, and has no password to give).
        squatter = start_squatter(squatter_user, "postgresql", tcp=(str(source.address), int(str(source.port))),
                                  bind_for=60)
        try:
            before = _walreceiver_failures(reddwarf, replica.id)
            signal_processes(processes_of(reddwarf.os_user(source.id)), signal.SIGKILL)
            squatter.wait_listening(30)
            wait_for(lambda: _walreceiver_failures(reddwarf, replica.id) > before + 1, 60,
                     "the replica to retry its source twice while the squatter holds its address")
            # A replica that does not stream is Degraded, and its view and events say why.
            wait_for(lambda: client.get_instance(replica.id).operating_status == "ERROR", 30,
                     "the replica to be Degraded for not streaming")
            assert client.get_instance(replica.id).status == "ACTIVE"
            health = _replication(client, replica.id)
            assert health["state"] == "stopped" and "source" in health["reason"], health
            assert any(e.get("kind") == "replication" for e in _events(reddwarf, replica.id))
        finally:
            squatter.stop()
        assert squatter.received == b"", "a replica sent something to the squatter"
        client.wait_for_instance(source.id, timeout=180)  # the address is free again: the source comes back
        _sql(source, "insert into t values (-9, 'back') returning 1")
        _eventually_on(replica, "select v from t where id = -9", "back")
        wait_for(lambda: client.get_instance(replica.id).operating_status == "HEALTHY", 30,
                 "the replica to be healthy again once it streams")
        assert _replication(client, replica.id)["state"] == "streaming"
        for instance_id in (replica.id, stranger.id, source.id):
            client.delete_instance(instance_id)
            client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)


def _set_admin(reddwarf: ReddwarfProcesses, instance_id: str) -> str:
    """The admin password the control plane holds for an instance (the set's, for a member)."""
    db = Database.from_url(f"sqlite:///{reddwarf.state_dir / 'control' / 'reddwarf.db'}",
                           key_file=reddwarf.state_dir / "control" / "secret.key")
    try:
        with db.unit_of_work(write=False) as uow:
            found = uow.secrets.get(instance_id, ADMIN_SECRET)
    finally:
        db.dispose()
    assert found is not None
    return found.reveal()


def test_a_detached_replica_is_read_write_on_its_own_with_its_own_admin(
    reddwarf: ReddwarfProcesses, unique_name: str
) -> None:
    with reddwarf.tenant() as client:
        source = _source(client, unique_name)
        replica = client.wait_for_instance(client.create_replicas(f"{unique_name}-r", source.id).id,
                                           timeout=ACTIVE_TIMEOUT)
        set_admin = _set_admin(reddwarf, source.id)
        admin = {"user": "reddwarf_admin", "password": set_admin, "dbname": "postgres"}
        assert _sql(replica, "select 1", **admin) == 1  # one admin credential for the set
        detached = cli(reddwarf, "instance", "detach", replica.id, "--wait")
        assert detached["status"] == "ACTIVE" and "replica_of" not in detached
        view = client.get_instance(replica.id)
        assert view.source_id is None and client.get_instance(source.id).replica_ids == []
        assert _sql(view, "select pg_is_in_recovery()") is False
        _sql(view, "insert into t values (-5, 'mine') returning 1")  # read-write, on its own
        _sql(source, "insert into t values (-6, 'theirs') returning 1")
        assert _sql(view, "select count(*) from t where id = -6") == 0
        assert _sql(source, "select count(*) from t where id = -5") == 0
        # The former set's admin password no longer opens it (it still opens the source).
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            _sql(view, "select 1", **admin)
        assert _sql(source, "select 1", **admin) == 1
        wait_for(lambda: _sql(source, "select count(*) from pg_replication_slots") == 0, 30,
                 "the detached replica's slot to be dropped")
        for instance_id in (replica.id, source.id):
            client.delete_instance(instance_id)
            client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)
