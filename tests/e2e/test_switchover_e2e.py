"""Switchover end to end (docs/replication.md "Promote"): a real `reddwarf server`, a PostgreSQL source with two
replicas, and a writer that inserts rows one at a time as fast as it can, counting each row the server
acknowledged. `promote_to_replica_source` makes a replica the primary; afterwards every acknowledged row is on
the new primary and on both other members, which follow it (the old primary read-only, as a replica). Then the
CLI switches back, and the set is as it was."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from reddwarf.client import Instance, ReddwarfClient
from reddwarf.client.errors import ReddwarfAPIError, WaitTimeout
from reddwarf.store.database import Database
from tests.e2e.test_cli_e2e import cli
from tests.e2e.test_replication_e2e import _events, _eventually_on, _replication, _source, _sql, squatter_user
from tests.e2e.test_trove_clients import OPENSTACK, openstack, trove
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

__all__ = ["squatter_user"]  # the fixture, shared with the replication module

SWITCH_TIMEOUT = 120.0
REJOIN_TIMEOUT = 300.0
EJECT_AFTER = 2.0


@pytest.fixture(scope="module")
def reddwarf() -> Iterator[ReddwarfProcesses]:
    # No copy-on-write pool here: these replicas are seeded by pg_basebackup, the path of hosts without one
    # (tests/e2e/test_replication_e2e.py seeds from snapshots).
    with running_plane("switchover", "127.0.176.0/24", REDDWARF_REPLICATION_CHECK_INTERVAL="0.5",
                       REDDWARF_EJECT_AFTER=str(EJECT_AFTER), REDDWARF_LOCAL_USE_COW_POOL="false") as procs:
        yield procs


def _writer(members: list[Instance]) -> Writer[psycopg.Connection[Any]]:
    """Inserts 1, 2, 3, ... into `w` on whichever member takes writes, one row per transaction (a commit that
    returned is acknowledged)."""
    def connect(member: Instance) -> psycopg.Connection[Any]:
        return psycopg.connect(host=member.address, port=member.port, user="app", password="replicate me 'please'",
                               dbname="app", connect_timeout=2, autocommit=True)

    # A number committed but never acknowledged (its primary died while the commit waited) is skipped.
    return Writer(members, connect, lambda conn, n: conn.execute("insert into w values (%s)", (n,)),
                  lambda conn: conn.close(), (psycopg.Error,), (psycopg.errors.UniqueViolation,))


def _streaming(client: ReddwarfClient, instance_id: str) -> bool:
    found = _replication(client, instance_id)
    return found.get("role") == "replica" and found.get("state") == "streaming"


def test_a_switchover_loses_no_acknowledged_write_and_every_member_follows(
    reddwarf: ReddwarfProcesses, unique_name: str
) -> None:
    with reddwarf.tenant() as client:
        source = _source(client, unique_name)
        _sql(source, "create table w (n int primary key)")
        made = client.create_replicas(unique_name, source.id, 2)
        replica_ids = client.get_instance(source.id).replica_ids
        replicas = [client.wait_for_instance(i, timeout=ACTIVE_TIMEOUT) for i in replica_ids]
        candidate, other = replicas
        assert made.id in replica_ids
        assert not any("snapshot" in str(e.get("message")) for r in replica_ids for e in _events(reddwarf, r))
        for replica in replicas:
            wait_for(lambda r=replica: _streaming(client, r.id), 30, f"replica {replica.id} to stream")

        # Not a replica: Trove's 400.
        with pytest.raises(ReddwarfAPIError) as refused:
            client.promote_replica(source.id)
        assert refused.value.status == 400 and "not a replica" in str(refused.value)

        with _writer([source, candidate]) as writer:
            writer.wait_for_more(200)
            client.promote_replica(candidate.id)
            # Every member shows PROMOTE from the moment it is accepted.
            assert {client.get_instance(i).status for i in (source.id, candidate.id, other.id)} <= {
                "PROMOTE", "ACTIVE"}
            promoted = client.wait_for_detach(candidate.id, timeout=SWITCH_TIMEOUT)
            writer.wait_for_more(200)
        acknowledged = writer.acknowledged
        assert writer.refused >= 1  # the writer did meet the switch

        assert promoted.source_id is None and sorted(promoted.replica_ids) == sorted([source.id, other.id])
        assert _sql(promoted, "select pg_is_in_recovery()") is False
        expected = (len(acknowledged), max(acknowledged))
        assert _sql(promoted, "select count(*), max(n) from w") == expected
        assert _sql(promoted, f"select count(*) from w where n <= {max(acknowledged)}") == len(acknowledged)

        # The set's writer endpoint is still the old primary's address, and it reaches the new primary now.
        assert promoted.writer is not None and (promoted.writer.address, promoted.writer.port) == (
            source.address, source.port)
        assert _sql(source, "select pg_is_in_recovery()") is False
        # The old primary and the other replica follow the new primary: its rows, a row written now; read-only.
        # (Each is asked over its own unix socket: the old primary's address is the writer endpoint now.)
        _sql(promoted, "insert into w values (-1)")
        for follower_id in (source.id, other.id):
            follower = client.wait_for_instance(follower_id, timeout=ACTIVE_TIMEOUT)
            assert follower.source_id == candidate.id
            _eventually_on(follower, "select count(*) from w where n = -1", 1, direct=reddwarf)
            assert _sql(follower, "select count(*) from w where n > 0", direct=reddwarf) == len(acknowledged)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                _sql(follower, "insert into w values (-2)", direct=reddwarf)
            wait_for(lambda f=follower_id: _streaming(client, f), 30, f"{follower_id} to stream from the new primary")
        assert _replication(client, candidate.id) == {"role": "primary", "mode": "async", "auto_failover": True}
        slots = "select count(*) from pg_replication_slots where slot_name like 'reddwarf\\_%'"
        assert _sql(promoted, slots) == 2
        assert _sql(client.get_instance(source.id), slots, direct=reddwarf) == 0  # the old primary kept none

        # The CLI switches back: the original source is the primary again, with every row.
        back = cli(reddwarf, "instance", "promote", source.id, "--wait")
        assert back["status"] == "ACTIVE" and not back.get("replica_of")
        restored = client.get_instance(source.id)
        assert _sql(restored, "select count(*) from w") == len(acknowledged) + 1
        _sql(restored, "insert into w values (-3)")
        for follower_id in (candidate.id, other.id):
            follower = client.wait_for_instance(follower_id, timeout=ACTIVE_TIMEOUT)
            assert follower.source_id == source.id
            _eventually_on(follower, "select count(*) from w where n = -3", 1)

        for instance_id in (candidate.id, other.id, source.id):
            client.delete_instance(instance_id)
            client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)


def _failover_choice(reddwarf: ReddwarfProcesses, source_id: str) -> dict[str, Any]:
    """What the eject of `source_id` journaled at its `choose` step (how much log each replica held)."""
    db = Database.from_url(f"sqlite:///{reddwarf.state_dir / 'control' / 'reddwarf.db'}",
                           key_file=reddwarf.state_dir / "control" / "secret.key")
    try:
        with db.unit_of_work(write=False) as uow:
            (op,) = [op for op in uow.operations.history_for(source_id) if op.kind == "instance.replica.eject"]
            return uow.operations.steps(op.id)["choose"]
    finally:
        db.dispose()


def _eject_accepted(client: ReddwarfClient, source_id: str) -> bool:
    try:
        client.eject_replica_source(source_id)
    except ReddwarfAPIError as exc:
        assert exc.status == 400 and "current heartbeat" in str(exc), exc
        return False
    return True


def test_an_eject_fences_the_dead_source_and_promotes_the_most_advanced_replica(
    reddwarf: ReddwarfProcesses, unique_name: str, squatter_user: OsUser
) -> None:
    with reddwarf.tenant() as client:
        source = _source(client, unique_name)
        # A tenant's eject: this set does not fail over by itself (tests/e2e/test_failover_e2e.py does).
        client.create_replicas(unique_name, source.id, 2, auto_failover=False)
        replica_ids = client.get_instance(source.id).replica_ids
        replicas = [client.wait_for_instance(i, timeout=ACTIVE_TIMEOUT) for i in replica_ids]
        _sql(source, "insert into t values (-1, 'before the failure') returning 1")
        for replica in replicas:
            _eventually_on(replica, "select v from t where id = -1", "before the failure")
        # A healthy source cannot be ejected (Trove: it "has a current heartbeat"); a replica is no source.
        with pytest.raises(ReddwarfAPIError) as refused:
            client.eject_replica_source(source.id)
        assert refused.value.status == 400 and "current heartbeat" in str(refused.value)
        with pytest.raises(ReddwarfAPIError) as refused:
            client.eject_replica_source(replicas[0].id)
        assert refused.value.status == 400 and "not a replica source" in str(refused.value)

        # The source dies and cannot come back (someone holds its address): the health loop's restarts fail.
        squatter = start_squatter(squatter_user, "postgresql", tcp=(str(source.address), int(str(source.port))),
                                  bind_for=120)
        try:
            # Its last write reaches no replica (they are paused): the old primary's log goes further than any
            # replica's, which is what an asynchronous replica loses in a failover, and what a rejoin rewinds.
            paused = [pid for r in replicas for pid in processes_of(reddwarf.os_user(r.id))]
            signal_processes(paused, signal.SIGSTOP)
            try:
                # More WAL than the paused replicas' socket buffers take, then the row no replica will have.
                _sql(source, "insert into t select -1000 - g, repeat('x', 1000) from generate_series(1, 20000) g")
                _sql(source, "insert into t values (-3, 'only on the old primary') returning 1")
                signal_processes(processes_of(reddwarf.os_user(source.id)), signal.SIGKILL)
            finally:
                signal_processes(paused, signal.SIGCONT)
            squatter.wait_listening(30)
            wait_for(lambda: _eject_accepted(client, source.id), 60, f"the source to be down {EJECT_AFTER:g} s")
            assert {client.get_instance(i).status for i in (source.id, *(r.id for r in replicas))} <= {
                "EJECT", "ACTIVE", "ERROR"}
            promoted = client.wait_for_detach(replicas[0].id, timeout=SWITCH_TIMEOUT)
            # Fenced: while its address is held it cannot even try to come back, and it never did as a primary.
            shown = client.get_instance(source.id).wire()
            assert shown["replica_of"]["id"] == promoted.id, shown
            assert any("fenced" in str(e.get("message")) for e in _events(reddwarf, source.id))
        finally:
            squatter.stop()
        views = {r.id: client.wait_for_instance(r.id, timeout=ACTIVE_TIMEOUT) for r in replicas}
        (primary,) = [v for v in views.values() if v.source_id is None]
        (other,) = [v for v in views.values() if v.source_id is not None]
        held = _failover_choice(reddwarf, source.id)["held"]
        assert held[primary.id] == max(held.values()) and set(held) == {r.id for r in replicas}
        assert other.source_id == primary.id
        assert _sql(primary, "select pg_is_in_recovery()") is False
        assert _sql(primary, "select v from t where id = -1") == "before the failure"
        _sql(primary, "insert into t values (-2, 'after the failover') returning 1")
        _eventually_on(other, "select v from t where id = -2", "after the failover")
        # Its address free again, the old primary rejoins: rewound from the new primary, it follows it, read-only.
        # Its rejoin may have started the server while the squatter still held the address: a start that does not
        # answer is waited for up to the start's deadline (60 s), then retried after a backoff (up to 30 s).
        try:
            rejoined = client.wait_for_instance(source.id, timeout=REJOIN_TIMEOUT)
        except WaitTimeout as exc:  # what the rejoin was doing, for whoever reads the failure
            events = _events(reddwarf, source.id)[-12:]
            raise AssertionError(f"{exc}\nevents: {events}\n{reddwarf.log_tail(80)}") from None
        assert rejoined.source_id == primary.id and _replication(client, source.id)["role"] == "replica"
        _eventually_on(rejoined, "select v from t where id = -2", "after the failover", direct=reddwarf)
        assert _sql(rejoined, "select pg_is_in_recovery()", direct=reddwarf) is True
        assert _sql(rejoined, "select count(*) from t where id = -3", direct=reddwarf) == 0  # rewound away
        assert _sql(rejoined, "select pg_is_in_recovery()") is False  # its address: the writer endpoint
        assert _sql(primary, "select count(*) from t where id = -3") == 0

        # Its replicas deleted, the founder with them, the primary keeps the set's writer endpoint (the
        # founder's address): the tenant's connection string still leads to it.
        for instance_id in (other.id, source.id):
            client.delete_instance(instance_id)
            client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)
        alone = client.get_instance(primary.id)
        assert alone.replica_ids == [] and alone.writer is not None
        assert (alone.writer.address, alone.writer.port) == (source.address, source.port)
        _sql(source, "insert into t values (-4, 'through the writer endpoint, alone') returning 1")
        assert _sql(primary, "select v from t where id = -4") == "through the writer endpoint, alone"
        # Deleted, it takes the endpoint with it: nothing answers on the founder's address any more.
        client.delete_instance(primary.id)
        client.wait_for_delete(primary.id, timeout=DELETE_TIMEOUT)
        with pytest.raises(psycopg.OperationalError):
            _sql(source, "select 1")


def test_troveclient_and_the_openstack_cli_create_promote_detach_and_eject(
    reddwarf: ReddwarfProcesses, unique_name: str, squatter_user: OsUser
) -> None:
    tc = trove(reddwarf)
    with reddwarf.tenant() as client:
        source = _source(client, unique_name)
        # As troveclient and the OpenStack CLI send it: a name and `replica_of` (and a count), nothing else.
        first = tc.instances.create(f"{unique_name}-tc", replica_of=source.id, replica_count=2)
        assert first.status == "BUILD"
        osc = openstack(reddwarf, "instance", "create", f"{unique_name}-osc", "--replica-of", source.id)["id"]
        ids = client.get_instance(source.id).replica_ids
        assert len(ids) == 3 and osc in ids and first.id in ids
        for replica_id in ids:
            client.wait_for_instance(replica_id, timeout=ACTIVE_TIMEOUT)
        tc_first, tc_second = [i for i in ids if i != osc]
        assert tc.instances.get(tc_first).replica_of["id"] == source.id

        openstack(reddwarf, "instance", "promote", osc, output=False)
        assert client.wait_for_detach(osc, timeout=SWITCH_TIMEOUT).source_id is None
        tc.instances.promote_to_replica_source(source.id)
        client.wait_for_detach(source.id, timeout=SWITCH_TIMEOUT)
        assert sorted(r["id"] for r in tc.instances.get(source.id).replicas) == sorted(ids)

        tc.instances.update(tc_first, detach_replica_source=True)
        openstack(reddwarf, "instance", "detach", tc_second, output=False)
        for detached in (tc_first, tc_second):
            assert client.wait_for_detach(detached, timeout=SWITCH_TIMEOUT).source_id is None
        _sql(client.get_instance(tc_first), "insert into t values (-5, 'mine') returning 1")
        client.set_replication(source.id, auto_failover=False)  # ejected by the OpenStack CLI, not by itself
        shown = client.get_instance(source.id).replication or {}
        assert (shown["role"], shown["mode"], shown["auto_failover"]) == ("primary", "async", False)

        squatter = start_squatter(squatter_user, "postgresql", tcp=(str(source.address), int(str(source.port))),
                                  bind_for=120)
        try:
            signal_processes(processes_of(reddwarf.os_user(source.id)), signal.SIGKILL)
            squatter.wait_listening(30)
            wait_for(lambda: _osc_ejected(reddwarf, source.id), 60, "the OpenStack CLI's eject to be accepted")
            wait_for(lambda: client.get_instance(source.id).status == "ERROR", SWITCH_TIMEOUT, "the fence")
        finally:
            squatter.stop()
        assert client.wait_for_detach(osc, timeout=SWITCH_TIMEOUT).source_id is None
        assert tc.instances.get(source.id).replica_of["id"] == osc
        for batch in ((source.id, tc_first, tc_second), (osc,)):  # the primary once it has no replica left
            for instance_id in batch:
                client.delete_instance(instance_id)
            for instance_id in batch:
                client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)


def _osc_ejected(reddwarf: ReddwarfProcesses, source_id: str) -> bool:
    command = [OPENSTACK, "--os-auth-type", "admin_token", "--os-endpoint", reddwarf.endpoint, "database",
               "instance", "eject", source_id]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "OS_TOKEN": reddwarf.token})
    if result.returncode != 0:
        assert "current heartbeat" in result.stderr, result.stderr
    return result.returncode == 0
