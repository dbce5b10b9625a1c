"""Automatic failover end to end (docs/failover.md): a real `reddwarf server`, a primary with one replica, and a
writer that writes one row (key) at a time through the set's writer endpoint, as fast as the server
acknowledges. Then the primary fails, each way a primary fails:

- `kill`: every process of its server killed and its address taken at once, so that its restarts fail (a
  dead primary);
- `sigstop`: only its main process (PostgreSQL's postmaster) stopped: the kernel still completes TCP handshakes
  and a kept connection to a backend can keep answering, but no new session starts;
- `freeze`: its whole cgroup frozen (a hung host).

Each time the failover watch fails the set over by itself: writes resume through the same endpoint, the
replica is the primary, the old primary was fenced (its processes gone: a stopped one resumed with SIGCONT
takes nothing), and it rejoins as a replica once it can. The writer's longest wait is printed (the RTO is
measured by bench/failover.py, never asserted here). Also: a planned restart of the primary fails nothing
over, and a killed replica fails nothing over either.

The default run covers every fault once (PostgreSQL) and each other engine once; the rest is `matrix`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import redis

from reddwarf.client import Instance, ReddwarfClient
from reddwarf.client.errors import WaitTimeout
from reddwarf.runtimes.local.cgroups import Cgroups, detect
from tests.e2e import test_mariadb_replication_e2e as maria
from tests.e2e import test_redis_replication_e2e as red
from tests.e2e import test_replication_e2e as pg
from tests.e2e.test_replication_e2e import _events
from tests.e2e.test_switchover_e2e import _streaming
from tests.e2e.test_switchover_e2e import _writer as pg_writer
from tests.support.server import (
    ACTIVE_TIMEOUT,
    DELETE_TIMEOUT,
    ReddwarfProcesses,
    processes_of,
    running_plane,
    signal_processes,
    wait_for,
)
from tests.support.writer import Writer

FAILOVER_TIMEOUT = 60.0
REJOIN_TIMEOUT = 300.0
CGROUP_ROOT = Path("/sys/fs/cgroup")


@pytest.fixture(scope="module")
def reddwarf() -> Iterator[ReddwarfProcesses]:
    with running_plane("failover", "127.0.183.0/24", REDDWARF_REPLICATION_CHECK_INTERVAL="0.5") as procs:
        yield procs


@dataclass(frozen=True)
class Engine:
    """What the cases need of one engine: a source with a tenant user, a writer, and the acknowledged writes
    missing from a member (asked over its own unix socket)."""

    name: str
    source: Callable[[ReddwarfClient, str], Instance]
    writer: Callable[[list[Instance]], Writer[Any]]
    missing: Callable[[Instance, list[int], ReddwarfProcesses], int]


def _pg_missing(member: Instance, numbers: list[int], plane: ReddwarfProcesses) -> int:
    found = pg._sql(member, f"select array_agg(n) from w where n between {min(numbers)} and {max(numbers)}",
                    direct=plane)
    return len(set(numbers) - set(found or []))


def _pg_source(client: ReddwarfClient, name: str) -> Instance:
    source = pg._source(client, name)
    pg._sql(source, "create table w (n int primary key)")
    return source


def _maria_missing(member: Instance, numbers: list[int], plane: ReddwarfProcesses) -> int:
    conn = pymysql.connect(unix_socket=str(plane.socket_dir(member.id) / "mysqld.sock"), user=maria.USER,
                           password=maria.PASSWORD, database="app", connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("select n from w where n between %s and %s", (min(numbers), max(numbers)))
            found = {int(row[0]) for row in cur.fetchall()}
    finally:
        conn.close()
    return len(set(numbers) - found)


ENGINES = {
    "postgresql": Engine("postgresql", _pg_source, pg_writer, _pg_missing),
    "mariadb": Engine("mariadb", maria._source, maria._writer, _maria_missing),
    "redis": Engine("redis", red._source, red._writer, lambda m, n, p: red._missing(m, n, direct=p)),
}
FAULTS = ("kill", "sigstop", "freeze")
DEFAULT = {("postgresql", "kill"), ("postgresql", "sigstop"), ("postgresql", "freeze"), ("mariadb", "sigstop"),
           ("redis", "kill")}


def _cases() -> list[Any]:
    return [pytest.param(engine, fault, id=f"{engine}-{fault}",
                         marks=() if (engine, fault) in DEFAULT else (pytest.mark.matrix,))
            for engine in ENGINES for fault in FAULTS]


def _server_pid(plane: ReddwarfProcesses, instance_id: str) -> int:
    record = plane.state_dir / "instances" / instance_id.lower() / "private" / "server.json"
    return int(json.loads(record.read_text())["pid"])


def _cgroups() -> Cgroups:
    return Cgroups(detect(CGROUP_ROOT), CGROUP_ROOT, "reddwarf")


def _endpoint(view: Instance) -> Instance:
    """The set's writer endpoint, as an instance a writer can connect to."""
    assert view.writer is not None
    return Instance.model_validate({"id": "writer-endpoint", "name": "writer", "status": "ACTIVE",
                                    "ip": [view.writer.address], "port": view.writer.port})


class Holder:
    """Takes an address as root the moment it is free (bound with SO_REUSEADDR, as servers bind, and listening):
    the dead server's restart cannot bind it. Every connection is accepted and closed at once, so a client that
    reaches it fails at once, whatever its protocol."""

    def __init__(self, endpoint: tuple[str, int]) -> None:
        self._endpoint = endpoint
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _bind(self) -> socket.socket | None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(self._endpoint)
            sock.listen(64)
        except OSError:
            sock.close()
            return None
        sock.settimeout(0.1)
        return sock

    def _run(self) -> None:
        while not self._stop.is_set() and self._sock is None:
            self._sock = self._bind()
            if self._sock is None:
                time.sleep(0.001)
        self._bound.set()
        while not self._stop.is_set() and self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            conn.close()

    def wait_bound(self, timeout: float) -> None:
        assert self._bound.wait(timeout) and self._sock is not None, f"{self._endpoint} was never free"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        if self._sock is not None:
            self._sock.close()


class Fault:
    """One way a primary fails, and its undoing once the failover is done."""

    def __init__(self, kind: str, plane: ReddwarfProcesses, primary: Instance):
        self.kind, self.plane, self.primary = kind, plane, primary
        self.user = plane.os_user(primary.id)
        self.pid = _server_pid(plane, primary.id)
        self.holder: Holder | None = None
        self.struck = False

    def inflict(self) -> None:
        self.struck = True
        if self.kind == "kill":  # and its address taken at once: its restarts fail
            self.holder = Holder((str(self.primary.address), int(str(self.primary.port))))
            signal_processes(processes_of(self.user), signal.SIGKILL)
            self.holder.wait_bound(10)
        elif self.kind == "sigstop":
            os.kill(self.pid, signal.SIGSTOP)
        else:
            assert _cgroups().freeze(self.user), "this host has no freezer for the instance's cgroup"

    def undo(self) -> None:
        if self.holder is not None:
            self.holder.close()
        if self.kind == "sigstop":
            with contextlib.suppress(ProcessLookupError):  # resumed: it must take no write (the fence killed it)
                os.kill(self.pid, signal.SIGCONT)
        if self.kind == "freeze":
            _cgroups().thaw(self.user)


@pytest.mark.parametrize(("engine_name", "fault_kind"), _cases())
def test_writes_resume_through_the_writer_endpoint_when_the_primary_fails(
    reddwarf: ReddwarfProcesses, unique_name: str, engine_name: str, fault_kind: str
) -> None:
    engine = ENGINES[engine_name]
    with reddwarf.tenant() as client:
        source = engine.source(client, unique_name)
        replica = client.wait_for_instance(client.create_replicas(f"{unique_name}-r", source.id).id,
                                           timeout=ACTIVE_TIMEOUT)
        wait_for(lambda: _streaming(client, replica.id), 30, "the replica to stream")
        view = client.get_instance(source.id)
        assert view.replication is not None and view.replication["auto_failover"] is True
        assert view.writer is not None and (view.writer.address, view.writer.port) == (source.address, source.port)

        fault = Fault(fault_kind, reddwarf, source)
        with engine.writer([_endpoint(view)]) as writer:
            writer.wait_for_more(100)
            struck = time.monotonic()
            before = len(writer.acknowledged)
            fault.inflict()
            try:
                promoted = wait_for(lambda: _promoted(client, replica.id), FAILOVER_TIMEOUT,
                                    "the replica to be promoted by itself")
                writer.wait_for_more(100, timeout=FAILOVER_TIMEOUT)
                # Fenced before the promotion: not one process of the old primary's server is left.
                with pytest.raises(ProcessLookupError):
                    os.kill(fault.pid, 0)
            finally:
                fault.undo()
            writer.wait_for_more(100)  # a resumed old primary changes nothing: writes go on, on the new primary
        acknowledged = writer.acknowledged
        gap = writer.longest_gap(struck)
        lost = engine.missing(promoted, acknowledged, reddwarf)
        print(f"{engine_name} {fault_kind}: writes resumed after {gap:.2f} s; {lost} of {before} acknowledged "
              f"before the fault lost (asynchronous)")
        assert lost <= before  # only what the old primary acknowledged before it failed may be lost
        assert engine.missing(promoted, acknowledged[before + 200:], reddwarf) == 0  # and nothing after

        failover = [e for e in _events(reddwarf, source.id) if "automatic failover" in str(e.get("message"))]
        assert failover, _events(reddwarf, source.id)
        for event in failover:
            print(f"  {event.get('created')}: {event.get('message')}")
        assert any("writer endpoint again" in str(e.get("message")) for e in failover), failover
        refreshed = client.get_instance(promoted.id)
        assert refreshed.writer == view.writer and refreshed.replica_ids == [source.id]
        for line in reddwarf.log_tail(400).splitlines():  # the failover's steps, with their times
            if "instance.replica.eject" in line and ("step" in line or "done" in line):
                print("  " + line[11:23] + " " + line.rsplit("): ", 1)[-1][:80])
        # The old primary comes back only as a replica of the new one, read-only (until then it is ERROR, fenced).
        rejoined = wait_for(lambda: _rejoined(client, source.id, promoted.id), REJOIN_TIMEOUT,
                            "the old primary to rejoin as a replica")
        assert rejoined.source_id == promoted.id
        try:
            state = wait_for(lambda: _following_or_why(client, source.id), 60, "the rejoined member to stream")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {client.get_instance(source.id).replication}") from None
        print(f"  the old primary rejoined: {state}")
        if engine_name != "mariadb":  # MariaDB has no rewind: one that wrote what no replica received stays out
            assert state == "streaming"
            # A replica streams again: the set is no longer Degraded.
            wait_for(lambda: "state" not in (client.get_instance(promoted.id).replication or {}), 30,
                     "the new primary to show a streaming replica")
        _refuses_writes(engine_name, source, reddwarf)

        for instance_id in (source.id, promoted.id):
            client.delete_instance(instance_id)
            client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)


def _rejoined(client: ReddwarfClient, member_id: str, primary_id: str) -> Instance | None:
    view = client.get_instance(member_id)
    return view if view.status == "ACTIVE" and view.source_id == primary_id else None


def _following_or_why(client: ReddwarfClient, member_id: str) -> str | None:
    """"streaming" once the member follows its primary; MariaDB's own reason once it says it cannot (a former
    primary that wrote what no replica received has diverged: error 1236); None until either."""
    view = client.get_instance(member_id)
    found = view.replication or {}
    if found.get("state") == "streaming":
        return "streaming"
    reason = str(found.get("reason", ""))
    if found.get("state") == "stopped" and "1236" in reason and view.operating_status == "ERROR":
        return f"stopped, Degraded: {reason}"
    return None


def _promoted(client: ReddwarfClient, replica_id: str) -> Instance | None:
    view = client.get_instance(replica_id)
    return view if view.source_id is None and view.status == "ACTIVE" else None


def _refuses_writes(engine_name: str, member: Instance, plane: ReddwarfProcesses) -> None:
    if engine_name == "postgresql":
        assert pg._sql(member, "select pg_is_in_recovery()", direct=plane) is True
    elif engine_name == "mariadb":
        with pytest.raises(pymysql.err.OperationalError, match="read-only"):
            maria._sql(member, "insert into w values (-7)", direct=plane)
    else:
        with pytest.raises(redis.exceptions.ReadOnlyError):
            red._run(member, "SET", "mine", "1", direct=plane)


def test_a_planned_restart_and_a_dead_replica_fail_nothing_over(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    with reddwarf.tenant() as client:
        source = _pg_source(client, unique_name)
        replica = client.wait_for_instance(client.create_replicas(f"{unique_name}-r", source.id).id,
                                           timeout=ACTIVE_TIMEOUT)
        view = client.get_instance(source.id)
        # A restart is a short planned outage of the primary: the failover watch knows it (an operation of the
        # lifecycle is under way) and never fails the set over for it.
        started = pg._sql(source, "select pg_postmaster_start_time()::text")
        client.restart_instance(source.id)
        wait_for(lambda: _restarted(source, started), ACTIVE_TIMEOUT, "the primary to restart")
        client.wait_for_instance(source.id, timeout=ACTIVE_TIMEOUT)
        # A replica killed: its repair starts it again; the primary stays the primary.
        signal_processes(processes_of(reddwarf.os_user(replica.id)), signal.SIGKILL)
        wait_for(lambda: any("repair" in str(e.get("message")) or "not running" in str(e.get("message"))
                             for e in _events(reddwarf, replica.id)), 30, "the replica's death to be seen")
        client.wait_for_instance(replica.id, timeout=ACTIVE_TIMEOUT)
        wait_for(lambda: _streaming(client, replica.id), 60, "the replica to stream again")
        with engine_writer(view) as writer:
            writer.wait_for_more(50)
        assert client.get_instance(source.id).replica_ids == [replica.id]
        assert client.get_instance(replica.id).source_id == source.id
        assert not [e for e in _events(reddwarf, source.id) if "failover" in str(e.get("kind"))]
        _delete(client, reddwarf, replica.id, source.id)


def _delete(client: ReddwarfClient, plane: ReddwarfProcesses, *instance_ids: str) -> None:
    for instance_id in instance_ids:
        client.delete_instance(instance_id)
        try:
            client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)
        except WaitTimeout as exc:
            raise AssertionError(f"{exc}\nevents: {_events(plane, instance_id)[-8:]}\n{plane.log_tail(60)}") from None


def _restarted(source: Instance, started: str) -> bool:
    try:
        return bool(pg._sql(source, "select pg_postmaster_start_time()::text") != started)
    except psycopg.OperationalError:
        return False


def engine_writer(view: Instance) -> Writer[Any]:
    return ENGINES["postgresql"].writer([_endpoint(view)])


def _sync_state(client: ReddwarfClient, primary_id: str) -> str | None:
    found = client.get_instance(primary_id).replication or {}
    return str(found.get("synchronous", {}).get("state")) if "synchronous" in found else None


def _degraded(client: ReddwarfClient, instance_id: str) -> str | None:
    """Why the primary's set is degraded, as its view says (None: it is not)."""
    view = client.get_instance(instance_id)
    found = view.replication or {}
    return str(found.get("reason")) if found.get("state") == "degraded" else None


def _commits_waiting(engine_name: str, member: Instance, plane: ReddwarfProcesses) -> int:
    """The tenant's sessions whose commit waits for a replica's acknowledgment."""
    if engine_name == "postgresql":
        return int(pg._sql(member, "select count(*) from pg_stat_activity where wait_event = 'SyncRep'",
                           direct=plane))
    return int(maria._sql(member, "select count(*) from information_schema.processlist"
                                  " where state like 'Waiting for semi-sync%%'", direct=plane))


SYNC_ENGINES = [pytest.param("postgresql", id="postgresql"), pytest.param("mariadb", id="mariadb")]


@pytest.mark.parametrize("engine_name", SYNC_ENGINES)
def test_strict_synchronous_mode_waits_without_a_replica_and_a_failover_loses_no_acknowledged_write(
    reddwarf: ReddwarfProcesses, unique_name: str, engine_name: str
) -> None:
    engine = ENGINES[engine_name]
    with reddwarf.tenant() as client:
        source = engine.source(client, unique_name)
        client.create_replicas(f"{unique_name}-r", source.id, 2, mode="sync")
        replicas = [client.wait_for_instance(i, timeout=ACTIVE_TIMEOUT)
                    for i in client.get_instance(source.id).replica_ids]
        wait_for(lambda: _sync_state(client, source.id) == "sync", 60, "the set to be synchronous")
        view = client.get_instance(source.id)
        assert view.replication is not None and view.replication["durability"] == "strict"

        with engine.writer([_endpoint(view)]) as writer:
            writer.wait_for_more(100)
            # Both replicas hung: the primary acknowledges nothing more; its commits wait, and a condition says why.
            paused = [pid for r in replicas for pid in processes_of(reddwarf.os_user(r.id))]
            signal_processes(paused, signal.SIGSTOP)
            fault = Fault("kill", reddwarf, source)
            try:
                wait_for(lambda: _commits_waiting(engine_name, source, reddwarf) >= 1, 30,
                         "a commit to wait for a replica")
                stalled = len(writer.acknowledged)  # the writer is blocked in that commit
                wait_for(lambda: str(_degraded(client, source.id)).startswith("commits wait: no replica has"), 30,
                         "the primary to say its commits wait")
                assert client.get_instance(source.id).operating_status == "ERROR"
                assert len(writer.acknowledged) == stalled
                if engine_name == "postgresql":
                    # Then the primary dies while they hang (each still looks streaming to it): the most advanced
                    # replica has every acknowledged write. A MariaDB replica is asked itself whether it streams:
                    # hung, it is not, and a replica that stopped before its primary failed never takes over.
                    fault.inflict()
            finally:
                signal_processes(paused, signal.SIGCONT)
            if not fault.struck:
                wait_for(lambda: "commits wait" not in str(_degraded(client, source.id)), 30,
                         "the primary to say its commits flow again")
                writer.wait_for_more(50)
                fault.inflict()  # the primary dies under a steady load
            try:
                try:
                    promoted = wait_for(lambda: next(filter(None, (_promoted(client, r.id) for r in replicas)), None),
                                        FAILOVER_TIMEOUT, "a replica to be promoted by itself")
                except AssertionError as exc:
                    raise AssertionError(f"{exc}: {_events(reddwarf, source.id)[-6:]}") from None
                # The other replica follows the new primary and acknowledges: writes resume.
                writer.wait_for_more(100, timeout=FAILOVER_TIMEOUT)
            finally:
                fault.undo()
        acknowledged = writer.acknowledged
        lost = engine.missing(promoted, acknowledged, reddwarf)
        print(f"{engine_name} strict sync, kill: {lost} of {len(acknowledged)} acknowledged writes lost; writes "
              f"resumed after {writer.longest_gap(0):.2f} s (the hang included)")
        assert lost == 0
        assert client.get_instance(promoted.id).writer == view.writer
        wait_for(lambda: _sync_state(client, promoted.id) == "sync", 60, "the new primary's set to be synchronous")
        # The old primary rejoins and follows: what it wrote but never had acknowledged is rolled back (MariaDB:
        # cut from its binary log at its restart as a replica; PostgreSQL: rewound), so it has not diverged.
        wait_for(lambda: _rejoined(client, source.id, promoted.id), REJOIN_TIMEOUT, "the old primary to rejoin")
        state = wait_for(lambda: _following_or_why(client, source.id), 60, "the rejoined member to stream")
        assert state == "streaming", state
        _delete(client, reddwarf, *(r.id for r in replicas if r.id != promoted.id), source.id, promoted.id)


@pytest.mark.parametrize("engine_name", [pytest.param("postgresql", id="postgresql"),
                                         pytest.param("mariadb", id="mariadb", marks=pytest.mark.matrix)])
def test_available_synchronous_mode_drops_to_asynchronous_recorded_and_comes_back(
    reddwarf: ReddwarfProcesses, unique_name: str, engine_name: str
) -> None:
    engine = ENGINES[engine_name]
    with reddwarf.tenant() as client:
        source = engine.source(client, unique_name)
        replica = client.wait_for_instance(client.create_replicas(
            f"{unique_name}-r", source.id, mode="sync", durability="available").id, timeout=ACTIVE_TIMEOUT)
        wait_for(lambda: _sync_state(client, source.id) == "sync", 60, "the set to be synchronous")
        view = client.get_instance(source.id)
        with engine.writer([_endpoint(view)]) as writer:
            writer.wait_for_more(50)
            paused = processes_of(reddwarf.os_user(replica.id))
            signal_processes(paused, signal.SIGSTOP)
            try:
                # Its replica hung, the set drops to asynchronous (recorded) and writes go on without it.
                wait_for(lambda: _sync_state(client, source.id) == "async", 30, "the set to drop to asynchronous")
                writer.wait_for_more(100)
                assert any("no longer wait" in str(e.get("message")) for e in _events(reddwarf, source.id))
                assert "commits wait" not in str(_degraded(client, source.id))
            finally:
                signal_processes(paused, signal.SIGCONT)
            # Back, and caught up: synchronous again (and it fails over by itself again).
            wait_for(lambda: _sync_state(client, source.id) == "sync", 60, "the set to be synchronous again")
            writer.wait_for_more(50)
        assert _sync_state(client, source.id) == "sync"
        _delete(client, reddwarf, replica.id, source.id)
