"""Switchover end to end (docs/replication.md "Promote"): a real `reddwarf server`, a PostgreSQL source with two
replicas, and a writer that inserts rows one at a time as fast as it can, counting each row the server
acknowledged. `promote_to_replica_source` makes a replica the primary; afterwards every acknowledged row is on
the new primary and on both other members, which follow it (the old primary read-only, as a replica). Then the
CLI switches back, and the set is as it was."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from reddwarf.client import Instance, ReddwarfClient
from reddwarf.client.errors import ReddwarfAPIError
from tests.e2e.test_cli_e2e import cli
from tests.e2e.test_replication_e2e import _eventually_on, _replication, _source, _sql
from tests.support.server import ACTIVE_TIMEOUT, DELETE_TIMEOUT, ReddwarfProcesses, running_plane, wait_for

SWITCH_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def reddwarf() -> Iterator[ReddwarfProcesses]:
    with running_plane("switchover", "127.0.176.0/24", REDDWARF_REPLICATION_CHECK_INTERVAL="0.5") as procs:
        yield procs


class Writer:
    """Inserts 1, 2, 3, ... into `w` on whichever member takes writes, one row per transaction, and keeps the
    numbers the server acknowledged (a commit that returned)."""

    def __init__(self, members: list[Instance]) -> None:
        self.members = members
        self.acknowledged: list[int] = []
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            for member in self.members:
                if self._stop.is_set():
                    return
                try:
                    with psycopg.connect(host=member.address, port=member.port, user="app",
                                         password="replicate me 'please'", dbname="app", connect_timeout=2,
                                         autocommit=True) as conn:
                        while not self._stop.is_set():
                            conn.execute("insert into w values (%s)", (n + 1,))
                            n += 1
                            self.acknowledged.append(n)
                except psycopg.Error:
                    self.refused += 1
                    time.sleep(0.01)

    def wait_for_more(self, count: int) -> None:
        goal = len(self.acknowledged) + count
        wait_for(lambda: len(self.acknowledged) >= goal, 60, f"{count} more acknowledged writes")


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
        for replica in replicas:
            wait_for(lambda r=replica: _streaming(client, r.id), 30, f"replica {replica.id} to stream")

        # Not a replica: Trove's 400.
        with pytest.raises(ReddwarfAPIError) as refused:
            client.promote_replica(source.id)
        assert refused.value.status == 400 and "not a replica" in str(refused.value)

        with Writer([source, candidate]) as writer:
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

        # The old primary and the other replica follow the new primary: its rows, a row written now; read-only.
        _sql(promoted, "insert into w values (-1)")
        for follower_id in (source.id, other.id):
            follower = client.wait_for_instance(follower_id, timeout=ACTIVE_TIMEOUT)
            assert follower.source_id == candidate.id
            _eventually_on(follower, "select count(*) from w where n = -1", 1)
            assert _sql(follower, "select count(*) from w where n > 0") == len(acknowledged)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                _sql(follower, "insert into w values (-2)")
            wait_for(lambda f=follower_id: _streaming(client, f), 30, f"{follower_id} to stream from the new primary")
        assert _replication(client, candidate.id) == {"role": "primary"}
        slots = "select count(*) from pg_replication_slots where slot_name like 'reddwarf\\_%'"
        assert _sql(promoted, slots) == 2
        assert _sql(client.get_instance(source.id), slots) == 0  # the old primary kept none of its own

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
