"""MariaDB replication end to end (docs/replication.md "MariaDB"): a real `reddwarf server`, a MariaDB source and
its replicas, following it by GTID over TLS with their set's own CA. This plane has no copy-on-write pool, so each
replica is seeded from a full backup of its source, taken for it by a child operation of its create and
deleted once it is made (the contract suite seeds from snapshots).

- A switchover under a writer that counts every row the server acknowledged loses none of them; the old primary
  and the other replica follow the new primary, read-only (root included); a detached replica is read-write
  on its own with its own admin password.
- A replica whose primary died hands nothing to a squatter on the primary's address, even one that speaks TLS
  with a certificate naming that address: it does not trust it, so no login is ever sent. The replica shows
  Degraded with MariaDB's reason. The dead primary is ejected (the replica promoted, the old primary fenced),
  and once its address is free it rejoins as a replica of the new primary.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymysql
import pytest

from reddwarf.client import Instance, ReddwarfClient, UserRequest
from reddwarf.domain.certificates import self_signed
from reddwarf.domain.secret import Secret
from reddwarf.store.authority import set_authority
from reddwarf.store.database import Database
from tests.e2e.test_cli_e2e import cli
from tests.e2e.test_replication_e2e import _events, _replication, _set_admin, squatter_user
from tests.e2e.test_switchover_e2e import _eject_accepted, _streaming
from tests.support.engine_harness import OsUser
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
from tests.support.writer import Writer

__all__ = ["squatter_user"]

USER, PASSWORD = "app", "replicate me 'please'"
SWITCH_TIMEOUT = 120.0
EJECT_AFTER = 2.0


@pytest.fixture(scope="module")
def reddwarf() -> Iterator[ReddwarfProcesses]:
    with running_plane("mariadb-replication", "127.0.179.0/24", REDDWARF_REPLICATION_CHECK_INTERVAL="0.5",
                       REDDWARF_EJECT_AFTER=str(EJECT_AFTER), REDDWARF_LOCAL_USE_COW_POOL="false") as procs:
        yield procs


def _sql(instance: Instance, sql: str, *, user: str = USER, password: str = PASSWORD, database: str | None = "app",
         params: tuple[Any, ...] = (), direct: ReddwarfProcesses | None = None) -> Any:
    """`sql` on `instance` through its address, or (`direct`: its plane) its own unix socket: once its set has
    switched over, the founder's address is the set's writer endpoint and reaches the primary."""
    where: dict[str, Any] = ({"host": str(instance.address), "port": int(str(instance.port))} if direct is None
                             else {"unix_socket": str(direct.socket_dir(instance.id) / "mysqld.sock")})
    conn = pymysql.connect(**where, user=user, password=password, database=database, connect_timeout=5,
                           autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
    finally:
        conn.close()
    return None if row is None else (row[0] if len(row) == 1 else tuple(row))


def _eventually(instance: Instance, sql: str, expected: Any, direct: ReddwarfProcesses | None = None) -> None:
    def arrived() -> bool:
        try:
            return bool(_sql(instance, sql, direct=direct) == expected)
        except pymysql.err.OperationalError:
            return False

    wait_for(arrived, 60, f"{sql!r} to give {expected!r} on {instance.id}")


@contextmanager
def _store(reddwarf: ReddwarfProcesses) -> Iterator[Database]:
    db = Database.from_url(f"sqlite:///{reddwarf.state_dir / 'control' / 'reddwarf.db'}",
                           key_file=reddwarf.state_dir / "control" / "secret.key")
    try:
        yield db
    finally:
        db.dispose()


def _source(client: ReddwarfClient, name: str) -> Instance:
    created = client.create_instance(name, "1", 1, datastore="mariadb", databases=["app"],
                                     users=[UserRequest(name=USER, password=Secret(PASSWORD), databases=["app"])])
    source = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
    _sql(source, "create table w (n int primary key) engine=InnoDB")
    return source


def _writer(members: list[Instance]) -> Writer[Any]:
    def connect(member: Instance) -> Any:
        return pymysql.connect(host=str(member.address), port=int(str(member.port)), user=USER, password=PASSWORD,
                               database="app", connect_timeout=2, read_timeout=5, write_timeout=5, autocommit=True)

    return Writer(members, connect, lambda conn, n: conn.cursor().execute("insert into w values (%s)", (n,)),
                  lambda conn: conn.close(), (pymysql.err.MySQLError,), (pymysql.err.IntegrityError,))


def test_a_mariadb_switchover_loses_no_acknowledged_write_and_a_detached_replica_stands_alone(
    reddwarf: ReddwarfProcesses, unique_name: str
) -> None:
    with reddwarf.tenant() as client:
        source = _source(client, unique_name)
        _sql(source, "insert into w values (-100), (-101)")  # before any replica: in the seed backup
        started = _sql(source, "select variable_value from information_schema.global_status"
                               " where variable_name = 'UPTIME'", user="app")
        client.create_replicas(unique_name, source.id, 2)
        replica_ids = client.get_instance(source.id).replica_ids
        replicas = [client.wait_for_instance(i, timeout=ACTIVE_TIMEOUT) for i in replica_ids]
        candidate, other = replicas
        for replica in replicas:
            messages = [str(e.get("message")) for e in _events(reddwarf, replica.id)]
            seeded = [m for m in messages if "seeded from" in m]
            assert len(seeded) == 1 and "seeded from backup" in seeded[0] and source.id in seeded[0], seeded
            assert _sql(replica, "select count(*) from w where n < -99") == 2
            wait_for(lambda r=replica: _streaming(client, r.id), 30, f"replica {replica.id} to stream")
        # The backups taken to seed them go once they are made (the tenant saw them while they ran).
        wait_for(lambda: client.backups.list_backups(source.id) == [], 60, "the seed backups to be deleted")
        # The source was not restarted for its replicas (its uptime only grew).
        assert int(_sql(source, "select variable_value from information_schema.global_status"
                                " where variable_name = 'UPTIME'")) >= int(started)

        with _writer([source, candidate]) as writer:
            writer.wait_for_more(200)
            client.promote_replica(candidate.id)
            promoted = client.wait_for_detach(candidate.id, timeout=SWITCH_TIMEOUT)
            writer.wait_for_more(200)
        acknowledged = writer.acknowledged
        assert writer.refused >= 1  # the writer did meet the switch
        assert promoted.source_id is None and sorted(promoted.replica_ids) == sorted([source.id, other.id])
        assert _sql(promoted, "select @@read_only") == 0
        assert _sql(promoted, f"select count(*) from w where n in ({','.join(map(str, acknowledged))})") == len(
            acknowledged)

        # The old primary and the other replica follow the new primary, read-only for the tenant.
        _sql(promoted, "insert into w values (-1)")
        assert _sql(source, "select @@read_only") == 0  # its address is the set's writer endpoint now
        for follower_id in (source.id, other.id):  # each asked over its own unix socket
            follower = client.wait_for_instance(follower_id, timeout=ACTIVE_TIMEOUT)
            assert follower.source_id == candidate.id
            _eventually(follower, "select count(*) from w where n = -1", 1, direct=reddwarf)
            assert _sql(follower, "select count(*) from w", direct=reddwarf) == _sql(promoted, "select count(*) from w")
            with pytest.raises(pymysql.err.OperationalError, match="read-only"):
                _sql(follower, "insert into w values (-2)", direct=reddwarf)
            wait_for(lambda f=follower_id: _streaming(client, f), 30, f"{follower_id} to stream from the new primary")

        # Detach the other replica: read-write on its own, with an admin password of its own.
        set_admin = _set_admin(reddwarf, candidate.id)
        admin = {"user": "reddwarf_admin", "password": set_admin, "database": None}
        assert _sql(other, "select 1", **admin) == 1
        detached = cli(reddwarf, "instance", "detach", other.id, "--wait")
        assert detached["status"] == "ACTIVE" and "replica_of" not in detached
        alone = client.get_instance(other.id)
        _sql(alone, "insert into w values (-5)")
        _sql(promoted, "insert into w values (-6)")
        _eventually(source, "select count(*) from w where n = -6", 1, direct=reddwarf)
        assert _sql(alone, "select count(*) from w where n = -6") == 0
        assert _sql(promoted, "select count(*) from w where n = -5") == 0
        with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
            _sql(alone, "select 1", **admin)
        # Nothing of its former set's replication is left on it: no replication account, its own certificate.
        own = {"user": "reddwarf_admin", "password": _set_admin(reddwarf, other.id), "database": None}
        assert _sql(alone, "select count(*) from mysql.user where user = 'reddwarf_replication'", **own) == 0
        assert _sql(promoted, "select count(*) from mysql.user where user = 'reddwarf_replication'", **admin) == 1
        for instance_id in (other.id, source.id, candidate.id):
            client.delete_instance(instance_id)
            client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)


def test_no_login_reaches_a_squatter_on_a_dead_mariadb_primary_which_is_ejected_and_rejoins(
    reddwarf: ReddwarfProcesses, unique_name: str, squatter_user: OsUser
) -> None:
    with reddwarf.tenant() as client:
        source = _source(client, unique_name)
        # A tenant's eject: this set does not fail over by itself (tests/e2e/test_failover_e2e.py does).
        replica = client.wait_for_instance(
            client.create_replicas(f"{unique_name}-r", source.id, auto_failover=False).id, timeout=ACTIVE_TIMEOUT)
        _sql(source, "insert into w values (1)")
        _eventually(replica, "select count(*) from w", 1)

        # Whoever takes the dead primary's address serves TLS, in turn with a certificate naming that very address
        # from a CA of its own (as any local user could make), and with a certificate of the set's own CA naming
        # another address (the replica's own, as a member's OS user holds): the replica must trust neither.
        with _store(reddwarf) as db, db.unit_of_work() as uow:
            found = uow.replication.set_of(source.id)
            assert found is not None
            members = set_authority(uow, found.id).issue("a member", addresses=(str(replica.address),),
                                                         server=True, client=True)
        tls = Path(tempfile.mkdtemp(prefix="squatter-tls-"))  # a 0700 directory of the squatter's own
        os.chown(tls, squatter_user.uid, squatter_user.gid)
        pairs = []
        for name, issued in (("own", self_signed("squatter", (str(source.address),))), ("member", members)):
            for suffix, content in (("cert", issued.certificate), ("key", issued.key.reveal())):
                (tls / f"{name}-{suffix}.pem").write_text(content)
                os.chown(tls / f"{name}-{suffix}.pem", squatter_user.uid, squatter_user.gid)
            pairs.append((str(tls / f"{name}-cert.pem"), str(tls / f"{name}-key.pem")))
        squatter = start_squatter(squatter_user, "mariadb-tls", tcp=(str(source.address), int(str(source.port))),
                                  bind_for=120, tls=tuple(pairs))
        try:
            signal_processes(processes_of(reddwarf.os_user(source.id)), signal.SIGKILL)
            squatter.wait_listening(30)
            squatter.wait_connections(4, timeout=60)  # the replica came back to its primary's address, 4 times
            wait_for(lambda: client.get_instance(replica.id).operating_status == "ERROR", 30,
                     "the replica to be Degraded for not streaming")
            health = _replication(client, replica.id)
            assert health["state"] == "stopped" and "source" in health["reason"], health
            wait_for(lambda: _eject_accepted(client, source.id), 60, f"the source to be down {EJECT_AFTER:g} s")
            promoted = client.wait_for_detach(replica.id, timeout=SWITCH_TIMEOUT)
            assert any("fenced" in str(e.get("message")) for e in _events(reddwarf, source.id))
        finally:
            squatter.stop()
            shutil.rmtree(tls, ignore_errors=True)
        # The replica left before its login (user name, password): at the handshake with the squatter's own CA;
        # after it, on seeing the other address, with the set's (what the squatter records inside TLS is clear).
        assert squatter.tls_handshakes >= 1
        assert b"reddwarf_replication" not in squatter.received
        assert _sql(promoted, "select @@read_only") == 0
        _sql(promoted, "insert into w values (2)")
        # Its address free again, the old primary rejoins as a replica of the new primary, read-only.
        rejoined = client.wait_for_instance(source.id, timeout=SWITCH_TIMEOUT)
        assert rejoined.source_id == promoted.id and _replication(client, source.id)["role"] == "replica"
        _eventually(rejoined, "select count(*) from w", 2, direct=reddwarf)
        wait_for(lambda: _streaming(client, source.id), 30, "the rejoined member to stream")
        with pytest.raises(pymysql.err.OperationalError, match="read-only"):
            _sql(rejoined, "insert into w values (3)", direct=reddwarf)
        for instance_id in (source.id, promoted.id):
            client.delete_instance(instance_id)
            client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)
