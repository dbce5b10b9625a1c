"""Root on create (the create's `root` step) and the lost-admin fault of the health sweep, with the fake engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_api_accounts_support import AccountsApi, build_accounts_api
from tests.fakes.runtime import FakeRuntime

from reddwarf.domain.secret import Secret
from reddwarf.domain.status import ConditionType
from reddwarf.domain.workload import Placement, ProcessObservation
from reddwarf.services import accounts
from reddwarf.workflows.reconcilers.health import ADMIN_LOST, HealthSweep
from reddwarf.workflows.reconcilers.instances import REPAIR, CreateInstance


@pytest.fixture
def acc(tmp_path: Path, store_template: Path) -> Iterator[AccountsApi]:
    yield from build_accounts_api(tmp_path, store_template, root_on_create=True)


def test_root_on_create_step_enables_root_with_the_stored_password_once(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    engine = acc.engines["postgresql"]
    with api.db.unit_of_work() as uow:
        instance = uow.instances.get(iid)
        assert instance is not None
        password = accounts.root_password_on_create(api.ctx, uow, instance, engine)
    assert password is not None

    step = CreateInstance(acc.deps)
    step._root(instance, acc.deps.placement(instance), acc.deps.admin_password(iid))
    assert engine.server(iid).root_password == password
    assert api.count("secrets", "owner_id = ? AND name = 'root'", iid) == 0
    history = api.get(f"/mgmt/instances/{iid}/root", who="admin", project=api.admin_project).json()
    assert history["root_history"]["user"] == api.project

    engine.server(iid).root_password = None
    # A re-run after the password was used does nothing.
    step._root(instance, acc.deps.placement(instance), acc.deps.admin_password(iid))
    assert engine.server(iid).root_password is None


def test_root_on_create_is_off_without_the_setting_or_the_capability(acc: AccountsApi) -> None:
    from dataclasses import replace

    from reddwarf.domain.capabilities import Capability
    api, iid = acc.api, acc.active_instance()
    engine = acc.engines["postgresql"]
    off = replace(api.ctx, settings=api.ctx.settings.model_copy(update={"root_on_create": False}))
    with api.db.unit_of_work() as uow:
        instance = uow.instances.get(iid)
        assert instance is not None
        assert accounts.root_password_on_create(off, uow, instance, engine) is None
        engine.offered = frozenset({Capability.USERS})
        assert accounts.root_password_on_create(api.ctx, uow, instance, engine) is None


def test_lost_admin_after_root_is_a_fault_then_cleared(acc: AccountsApi) -> None:
    api, iid = acc.api, acc.active_instance()
    engine = acc.engines["postgresql"]
    sweep = HealthSweep(acc.deps)

    def check() -> dict[str, object]:
        with api.db.unit_of_work(write=False) as uow:
            instance = uow.instances.get(iid)
        assert instance is not None
        sweep.check(instance)
        return dict(api.get(f"/instances/{iid}").json()["instance"])

    engine.admin_ok = False
    view = check()  # root never enabled: no such fault (the probe failing is an ordinary ERROR)
    assert "fault" not in view

    assert api.post(f"/instances/{iid}/root", None).status_code == 200
    view = check()
    assert view["status"] == "ACTIVE"
    assert view["operating_status"] == "ERROR"
    assert view["fault"]["message"] == ADMIN_LOST  # type: ignore[index]
    assert check()["fault"]["message"] == ADMIN_LOST  # type: ignore[index]

    engine.admin_ok = True
    view = check()
    assert "fault" not in view
    assert view["operating_status"] == "HEALTHY"


def test_health_at_rest_pings_each_endpoint_once_per_ping_interval_and_logs_in_only_where_root_was_enabled(
    acc: AccountsApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain, rooted = acc.active_instance(), acc.active_instance()
    assert acc.api.post(f"/instances/{rooted}/root", None).status_code == 200
    engine = acc.engines["postgresql"]
    pings: list[str] = []
    logins: list[str] = []
    ping, probe = engine.ping, engine.probe

    def counted_ping(placement: Placement, timeout: float = 2.0) -> bool:
        pings.append(placement.instance_id)
        return ping(placement, timeout)

    def counted_probe(placement: Placement, user: str, password: Secret, timeout: float = 2.0,
                      dbname: str | None = None) -> bool:
        logins.append(placement.instance_id)
        return probe(placement, user, password, timeout, dbname)

    monkeypatch.setattr(engine, "ping", counted_ping)
    monkeypatch.setattr(engine, "probe", counted_probe)
    now = [1000.0]
    sweep = HealthSweep(acc.deps, ping_every=1.0, admin_every=60.0, clock=lambda: now[0])

    for _ in range(5):  # five rounds within one ping interval
        sweep()
    assert sorted(pings) == sorted([plain, rooted]) and logins == [rooted]
    now[0] += 1.0
    sweep()
    assert len(pings) == 4 and logins == [rooted]  # pinged again; the admin login waits its minute
    now[0] += 60.0
    sweep()
    assert logins == [rooted, rooted]


def test_a_server_exit_told_by_the_runtime_wakes_its_instance(acc: AccountsApi) -> None:
    iid = acc.active_instance()
    woken: list[str] = []
    sweep = HealthSweep(acc.deps)
    sweep.wake = woken.append
    for _key, instance in sweep.watched():
        sweep.first_look(instance)
    with acc.api.db.unit_of_work(write=False) as uow:
        found = uow.instances.get(iid)
    assert found is not None
    sweep.server_exited("not-a-server-of-ours")
    sweep.server_exited(acc.deps.placement(found).instance_id)  # the runtime names it by its placement
    assert woken == [iid]


def test_the_sweep_writes_a_volume_usage_that_moved_a_megabyte_not_a_few_kilobytes(
    acc: AccountsApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    iid = acc.active_instance()
    sweep = HealthSweep(acc.deps)
    runtime = acc.deps.runtime

    def stored() -> tuple[int | None, float]:
        with acc.api.db.unit_of_work(write=False) as uow:
            instance = uow.instances.get(iid)
        assert instance is not None
        return instance.volume_used_bytes, instance.updated

    sweep()
    used, updated = stored()
    assert used is not None

    def using(used_bytes: int) -> None:
        seen = ProcessObservation(running=True, pid=1, volume_used_bytes=used_bytes)
        monkeypatch.setattr(runtime, "observe", lambda placement: seen)

    using(used + 28 * 1024)  # an idle PostgreSQL's statistics files come and go
    sweep()
    assert stored() == (used, updated)  # nothing written
    using(used + 2 * 1024 * 1024)
    sweep()
    assert stored()[0] == used + 2 * 1024 * 1024


GB = 1024**3


def test_a_full_volume_is_degraded_and_a_dead_server_on_it_is_not_restarted_until_it_has_room(
    acc: AccountsApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    iid = acc.active_instance()
    sweep = HealthSweep(acc.deps)
    runtime = acc.deps.runtime

    def seeing(running: bool, used: int) -> None:
        seen = ProcessObservation(running=running, pid=1 if running else None, exit_reason="" if running else
                                  "process 1 exit status 1", volume_used_bytes=used, volume_size_bytes=GB)
        monkeypatch.setattr(runtime, "observe", lambda placement: seen)

    def now() -> tuple[str, str, list[str], list[str]]:
        with acc.api.db.unit_of_work(write=False) as uow:
            instance = uow.instances.get(iid)
            assert instance is not None
            degraded = {c.type: c for c in instance.conditions}[ConditionType.DEGRADED]
            repairs = [op.kind for op in uow.operations.active_for(iid) if op.kind == REPAIR]
            events = [e.message for e in uow.events.list(iid)]
        return instance.operating_status.value, degraded.reason if degraded.status else "", repairs, events

    seeing(True, GB - 8 * 1024 * 1024)  # running, 8 MiB left: writes fail
    sweep()
    operating, reason, _, events = now()
    assert (operating, reason) == ("ERROR", "VolumeFull") and any("volume is full" in e for e in events)
    seeing(True, GB // 2)
    sweep()
    assert now()[:2] == ("HEALTHY", "")

    seeing(False, GB - 1024 * 1024)  # then it dies on a full volume: no repair, which would fail the same way
    for _ in range(3):
        sweep()
    operating, reason, repairs, events = now()
    assert reason == "ServerNotRunning" and repairs == []
    assert sum("not restarted until the volume has room" in e for e in events) == 1  # said once, not each round
    seeing(False, GB // 2)  # room again (freed, or a larger volume): repaired
    sweep()
    assert now()[2] == [REPAIR]


def test_a_repair_never_starts_a_server_on_a_full_volume(acc: AccountsApi, monkeypatch: pytest.MonkeyPatch) -> None:
    iid = acc.active_instance()
    runtime = acc.deps.runtime
    assert isinstance(runtime, FakeRuntime)
    seen = ProcessObservation(running=False, exit_reason="process 1 exit status 1", volume_used_bytes=GB - 1024,
                              volume_size_bytes=GB)
    monkeypatch.setattr(runtime, "observe", lambda placement: seen)
    starts = sum(1 for call in runtime.calls if call[0] == "start")
    with acc.api.db.unit_of_work() as uow:  # asked for before the volume filled, or by an operator's reset
        uow.operations.enqueue(REPAIR, iid)
    acc.drain()
    with acc.api.db.unit_of_work(write=False) as uow:
        instance = uow.instances.get(iid)
    assert instance is not None and instance.fault is not None and "volume is full" in instance.fault.message
    assert sum(1 for call in runtime.calls if call[0] == "start") == starts  # one refusal, no start, no retry
