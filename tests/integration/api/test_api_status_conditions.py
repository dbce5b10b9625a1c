"""The reconcilers' status writes as conditions, with the fake engine and runtime: the health sweep never writes
over a newer status from a stale view, an account write records its fault (conditions unchanged) and the
generation of the spec it mirrored."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_api_accounts_support import AccountsApi, build_accounts_api

from reddwarf.domain.conditions import Observation, Reason
from reddwarf.domain.instance import DatabaseSpec, Instance
from reddwarf.domain.secret import Secret
from reddwarf.domain.status import ConditionType, InstanceStatus, OperatingStatus
from reddwarf.domain.workload import Placement
from reddwarf.workflows.reconcilers.health import HealthSweep


@pytest.fixture
def acc(tmp_path: Path, store_template: Path) -> Iterator[AccountsApi]:
    yield from build_accounts_api(tmp_path, store_template)


def _get(acc: AccountsApi, instance_id: str) -> Instance:
    with acc.api.db.unit_of_work(write=False) as uow:
        found = uow.instances.get(instance_id)
    assert found is not None
    return found


def test_a_sweep_with_a_stale_view_writes_nothing_over_a_newer_status(
    acc: AccountsApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    iid = acc.active_instance()
    stale = _get(acc, iid)  # ACTIVE / HEALTHY, as the sweep listed it
    with acc.api.db.unit_of_work() as uow:  # meanwhile another writer found the server dead
        uow.instances.record(iid, Observation.SERVER_DOWN, "server not running: killed", generation=0)
    engine = acc.engines["postgresql"]

    def silent(placement: Placement, timeout: float = 2.0) -> bool:
        return False

    monkeypatch.setattr(engine, "ping", silent)
    sweep = HealthSweep(acc.deps)
    sweep.check(stale)  # would write ACTIVE / ERROR from what it saw

    now = _get(acc, iid)
    assert (now.status, now.operating_status) == (InstanceStatus.SHUTDOWN, OperatingStatus.SHUTDOWN)
    assert now.status_version == stale.status_version + 1
    with acc.api.db.unit_of_work(write=False) as uow:
        assert not [event for event in uow.events.list(iid) if event.message == "endpoint does not answer"]

    sweep.check(now)  # a fresh view is written, on top of the newer status
    after = _get(acc, iid)
    assert (after.status, after.operating_status) == (InstanceStatus.SHUTDOWN, OperatingStatus.ERROR)
    degraded = {c.type: c for c in after.conditions}[ConditionType.DEGRADED]
    assert (degraded.status, degraded.reason) == (True, Reason.ENDPOINT_NOT_ANSWERING)


def test_a_refused_account_write_records_its_fault_and_leaves_the_conditions(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    api.post(f"/instances/{iid}/databases", {"databases": [{"name": "a"}]})
    acc.drain()
    before = _get(acc, iid)
    api.post(f"/instances/{iid}/users", {"users": [{"name": "u", "password": "1", "databases": [{"name": "a"}]}]})
    acc.engines["postgresql"].server(iid).databases.clear()  # dropped behind Reddwarf's back: the engine refuses
    acc.drain()
    after = _get(acc, iid)
    assert after.fault is not None and after.fault.message.startswith("Creating users failed:")
    assert after.conditions == before.conditions
    assert (after.status, after.operating_status) == (InstanceStatus.ACTIVE, OperatingStatus.HEALTHY)
    assert after.status_version == before.status_version + 1


def test_an_account_write_that_changes_the_spec_records_the_generation_it_applied(acc: AccountsApi) -> None:
    api = acc.api
    iid = acc.active_instance(databases=[{"name": "app"}],
                              users=[{"name": "alice", "password": "old", "databases": [{"name": "app"}]}])
    server = acc.engines["postgresql"].server(iid)
    server.databases["app"] = DatabaseSpec("app")
    server.users[("alice", "%")] = (Secret("old"), {"app"})
    assert _get(acc, iid).generation == 0
    api.put(f"/instances/{iid}/users/alice", {"user": {"password": "new"}})
    acc.drain()
    instance = _get(acc, iid)
    assert (instance.generation, instance.observed_generation) == (1, 1)


def test_the_sweep_lists_afresh_after_a_write_whose_stamp_is_older_than_the_newest(acc: AccountsApi) -> None:
    """A writer that stamped `updated` before another but committed after it does not move the newest stamp:
    the sweep's cached list must still see its write (the status version moved)."""
    first, second = acc.active_instance(), acc.active_instance()
    sweep = HealthSweep(acc.deps)
    listed = dict(sweep.watched())
    assert listed[first].status_version == _get(acc, first).status_version
    newest = max(_get(acc, iid).updated for iid in (first, second))
    with acc.api.db.unit_of_work() as uow:
        uow.instances.record(first, Observation.SERVER_DOWN, "server not running: killed", generation=0)
    # As if this write had been stamped before the newest one and committed after it.
    with sqlite3.connect(acc.api.db_path) as raw:
        raw.execute("UPDATE instances SET updated = ? WHERE id = ?", (newest - 10, first))
    relisted = dict(sweep.watched())
    assert relisted[first].status_version == _get(acc, first).status_version
