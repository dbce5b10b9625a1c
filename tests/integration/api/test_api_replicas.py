"""Creating replicas through the API (fake engines, no servers): Trove's refusals of what a replica cannot
choose, each naming the field and writing nothing; a replica of a replica is 403; a source whose engine has no
replication is refused naming the capability; a source with replicas cannot be deleted (403); a replica's
accounts are read-only (422). The success path runs against real servers in tests/e2e/test_replication_e2e.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from api_support import Api, build_api, create_body
from tests.fakes.engines import DEFAULT_OFFERED, FakeEngine

from reddwarf.domain.capabilities import Capability
from reddwarf.domain.conditions import Observation
from reddwarf.domain.errors import TemporaryError
from reddwarf.domain.instance import Endpoint
from reddwarf.domain.operations import Kind
from reddwarf.domain.replication import ReplicaHealth, ReplicaState, SyncState
from reddwarf.store.repositories.instances import InstanceRepository


def _active(api: Api, instance_id: str) -> None:
    with api.db.unit_of_work() as uow:
        uow.instances.record(instance_id, Observation.READY, "set by the test", generation=0)


def _replica_body(source: str, **fields: Any) -> dict[str, Any]:
    return {"instance": {"name": "r", "replica_of": source, **fields}}


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"flavorRef": "1"}, "flavorRef", "Cannot specify flavor when creating replicas."),
    ({"datastore": {"type": "postgresql"}}, "datastore", "Cannot specify datastore when creating replicas."),
    ({"volume": {"size": 1}}, "volume", "Cannot specify volume when creating replicas."),
    ({"locality": "affinity"}, "locality", "Cannot specify locality when creating replicas."),
    ({"nics": [{"net-id": "n", "ip_address": "10.0.0.5"}]}, "nics",
     "Cannot specify IP address when creating replicas."),
    ({"users": [{"name": "u", "password": "pw"}]}, "users", "Cannot create a replica with users or databases."),
    ({"databases": [{"name": "d"}]}, "users", "Cannot create a replica with users or databases."),
    ({"restorePoint": {"backupRef": "b"}}, "restorePoint", "seeded from its source"),
    ({"replica_count": 4}, "replica_count", "between 1 and 3"),
    ({"replica_count": 0}, "replica_count", "between 1 and 3"),
])
def test_what_a_replica_cannot_choose_is_refused_by_name_and_writes_nothing(
    api: Api, new_instance: str, fields: dict[str, Any], field: str, message: str
) -> None:
    before = api.count("instances")
    response = api.post("/instances", _replica_body(new_instance, **fields))
    assert response.status_code == 400, response.text
    assert message in response.json()["badRequest"]["message"]
    assert api.count("instances") == before and api.count("replication_sets") == 0


def test_troveclients_body_reaches_the_source_checks(api: Api, new_instance: str) -> None:
    # name, replica_of and nics only, as troveclient sends: no flavorRef needed. The source is still BUILD.
    body = {"instance": {"name": "r", "replica_of": new_instance, "nics": [{"net-id": "n"}]}}
    response = api.post("/instances", body)
    assert response.status_code == 422 and "must be ACTIVE" in response.json()["unprocessableEntity"]["message"]
    _active(api, new_instance)
    # The fake engine declares no replication: refused naming the capability, nothing written.
    response = api.post("/instances", body)
    assert response.status_code == 400 and "replication" in response.json()["badRequest"]["message"]
    assert api.count("instances") == 1 and api.count("replication_sets") == 0
    assert api.post("/instances", _replica_body("no-such-instance")).status_code == 404
    other = api.post("/instances", _replica_body(new_instance), who="other", project=api.other_project)
    assert other.status_code == 404  # another project's instance is not even there


def test_a_replica_of_a_replica_a_source_delete_and_a_replicas_accounts_are_refused(api: Api) -> None:
    source = api.post("/instances", create_body(name="src")).json()["instance"]["id"]
    replica = api.post("/instances", create_body(name="rep")).json()["instance"]["id"]
    for made in (source, replica):
        _active(api, made)
    with api.db.unit_of_work() as uow:  # what a replica create records
        formed = uow.replication.form(source, api.project, source)
        uow.replication.add_replicas(formed, [replica])
    shown = api.get(f"/instances/{source}").json()["instance"]
    assert [r["id"] for r in shown["replicas"]] == [replica]
    assert api.get(f"/instances/{replica}").json()["instance"]["replica_of"]["id"] == source
    listed = {i["id"]: i for i in api.get("/instances").json()["instances"]}
    assert listed[replica]["replica_of"]["id"] == source and listed[source]["replicas"][0]["id"] == replica

    response = api.post("/instances", _replica_body(replica))
    assert response.status_code == 403 and "replica of a replica" in response.json()["forbidden"]["message"]
    response = api.delete(f"/instances/{source}")
    assert response.status_code == 403 and replica in response.json()["forbidden"]["message"]
    assert ("instance.delete", "pending") not in api.operations(source)
    response = api.post(f"/instances/{replica}/users", {"users": [{"name": "u", "password": "pw-pw-pw"}]})
    assert response.status_code == 422 and "read-only" in response.json()["unprocessableEntity"]["message"]
    # Detach, as troveclient sends it ("replica_of": "" or null; PATCH too): recorded once, not twice.
    assert api.put(f"/instances/{source}", {"instance": {"replica_of": ""}}).status_code == 400  # not a replica
    assert api.put(f"/instances/{replica}", {"instance": {"name": "", "slave_of": None}}).status_code == 400
    assert ("instance.replica.detach", "pending") not in api.operations(replica)  # the bad name changed nothing
    assert api.put(f"/instances/{replica}", {"instance": {"replica_of": None}}).status_code == 202
    patched = api.client.patch(api.url(f"/instances/{replica}"), json={"instance": {"slave_of": ""}},
                               headers=api.headers())
    assert patched.status_code == 202
    assert api.operations(replica).count(("instance.replica.detach", "pending")) == 1
    assert api.delete(f"/instances/{replica}").status_code == 202  # a replica can go


def _set_of_three(api: Api) -> tuple[str, str, str]:
    ids = [api.post("/instances", create_body(name=name)).json()["instance"]["id"] for name in ("p", "r1", "r2")]
    for made in ids:
        _active(api, made)
    with api.db.unit_of_work() as uow:
        uow.replication.add_replicas(uow.replication.form(ids[0], api.project, ids[0]), ids[1:])
    return ids[0], ids[1], ids[2]


def _promote(api: Api, instance_id: str) -> Any:
    return api.post(f"/instances/{instance_id}/action", {"promote_to_replica_source": {}})


def test_a_promote_is_refused_off_a_replica_or_unless_the_whole_set_is_active_and_streaming(api: Api) -> None:
    primary, replica, other = _set_of_three(api)
    response = _promote(api, primary)
    assert response.status_code == 400
    assert response.json()["badRequest"]["message"] == f"Instance {primary} is not a replica."
    with api.db.unit_of_work() as uow:  # another member not ACTIVE: nothing recorded
        uow.instances.record(other, Observation.REBOOTING, "set by the test", generation=0)
    response = _promote(api, replica)
    assert response.status_code == 422 and f"instance {other} is REBOOT" in response.text
    _active(api, other)
    with api.db.unit_of_work() as uow:  # last seen not streaming
        uow.replication.record_health(replica, ReplicaHealth(ReplicaState(False, detail="it is not connected"), 1.0))
    response = _promote(api, replica)
    assert response.status_code == 422 and "it is not connected" in response.text
    assert ("instance.replica.promote", "pending") not in api.operations(replica)
    assert {api.get(f"/instances/{i}").json()["instance"]["status"] for i in (primary, replica, other)} == {"ACTIVE"}


def test_a_promote_is_recorded_once_and_every_member_shows_promote(api: Api) -> None:
    primary, replica, other = _set_of_three(api)
    assert _promote(api, replica).status_code == 202
    assert _promote(api, replica).status_code == 202  # asked again while pending: nothing more
    assert api.operations(replica).count(("instance.replica.promote", "pending")) == 1
    for member in (primary, replica, other):
        assert api.get(f"/instances/{member}").json()["instance"]["status"] == "PROMOTE"
    # Account writes wait for the set to settle: 422, not a write that would fail on a demoted primary.
    response = api.post(f"/instances/{primary}/users", {"users": [{"name": "u", "password": "pw-pw-pw"}]})
    assert response.status_code == 422 and "PROMOTE" in response.text


def test_a_promote_whose_members_status_keeps_changing_is_a_409_that_changes_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, replica, other = _set_of_three(api)

    def racing(*args: object, **kwargs: object) -> object:  # every compare-and-swap of the status lost
        raise TemporaryError("The status of instance x kept changing under this write; retrying.")

    monkeypatch.setattr(InstanceRepository, "record", racing)
    response = _promote(api, replica)
    assert response.status_code == 409, response.text
    assert "is changing right now; try again" in response.json()["conflictingRequest"]["message"]
    monkeypatch.undo()
    assert ("instance.replica.promote", "pending") not in api.operations(replica)
    assert {api.get(f"/instances/{i}").json()["instance"]["status"] for i in (primary, replica, other)} == {"ACTIVE"}


def test_a_sets_policy_is_set_on_its_primary_and_shown_with_its_endpoints(api: Api) -> None:
    source = api.post("/instances", create_body(name="src")).json()["instance"]["id"]
    replica = api.post("/instances", create_body(name="rep")).json()["instance"]["id"]
    alone = api.post("/instances", create_body(name="alone")).json()["instance"]["id"]
    for made in (source, replica, alone):
        _active(api, made)
    # Outside a set there is no policy to set, and a create of a single instance takes none.
    response = api.patch(f"/instances/{alone}", {"instance": {"replication": {"auto_failover": False}}})
    assert response.status_code == 400 and "not the primary of a replication set" in response.text
    response = api.post("/instances", create_body(name="x", replication={"auto_failover": False}))
    assert response.status_code == 400 and "replication" in response.json()["badRequest"]["message"]
    with api.db.unit_of_work() as uow:  # what a replica create records: the source's address is the writer
        formed = uow.replication.form(source, api.project, source, ("127.0.1.9", 5432))
        uow.replication.add_replicas(formed, [replica])
        uow.replication.set_reader(formed.id, ("127.0.1.10", 5432))
    shown = api.get(f"/instances/{source}").json()["instance"]
    # Degraded until a replica streams (the replication watch has seen none yet): nothing could take over.
    assert shown["replication"] == {"role": "primary", "mode": "async", "auto_failover": True, "state": "degraded",
                                    "reason": "no replica streams from this primary now"}
    with api.db.unit_of_work() as uow:
        uow.replication.record_health(replica, ReplicaHealth(ReplicaState(streaming=True), observed=1.0))
    shown = api.get(f"/instances/{source}").json()["instance"]
    assert shown["replication"] == {"role": "primary", "mode": "async", "auto_failover": True}
    assert shown["endpoints"] == {"writer": {"address": "127.0.1.9", "port": 5432},
                                  "reader": {"address": "127.0.1.10", "port": 5432}}
    assert api.get(f"/instances/{replica}").json()["instance"]["endpoints"] == shown["endpoints"]

    for body, field in (({"mode": "fast"}, "mode"), ({"auto_failover": "yes"}, "auto_failover"),
                        ({"mode": "async", "extra": 1}, "extra")):
        response = api.patch(f"/instances/{source}", {"instance": {"replication": body}})
        assert response.status_code == 400 and field in response.text, response.text
    # Synchronous mode is not offered by this engine: refused by name, nothing changed.
    response = api.put(f"/instances/{source}", {"instance": {"replication": {"mode": "sync"}}})
    assert response.status_code == 400 and "replication.mode sync is not offered" in response.text
    # Only the primary takes it; a detach and a policy at once are refused before anything is recorded.
    response = api.patch(f"/instances/{replica}", {"instance": {"replication": {"auto_failover": False}}})
    assert response.status_code == 400
    response = api.patch(f"/instances/{replica}", {"instance": {"replica_of": None,
                                                                "replication": {"auto_failover": False}}})
    assert response.status_code == 400 and api.get(f"/instances/{replica}").json()["instance"]["status"] == "ACTIVE"
    assert api.get(f"/instances/{source}").json()["instance"]["replication"]["auto_failover"] is True

    assert api.patch(f"/instances/{source}", {"instance": {"replication": {"auto_failover": False}}}).status_code == 202
    shown = api.get(f"/instances/{source}").json()["instance"]
    assert shown["replication"] == {"role": "primary", "mode": "async", "auto_failover": False}  # still streaming
    events = [e["message"] for e in api.get(f"/instances/{source}/events").json()["events"]]
    assert any("automatic failover off" in m for m in events)


def test_a_founder_whose_address_is_its_sets_writer_endpoint_is_not_detached(api: Api) -> None:
    founder = api.post("/instances", create_body(name="src")).json()["instance"]["id"]
    other = api.post("/instances", create_body(name="rep")).json()["instance"]["id"]
    for made in (founder, other):
        _active(api, made)
    with api.db.unit_of_work() as uow:  # a switchover later: the other is the primary, the founder follows it
        uow.instances.set_endpoint(founder, Endpoint("127.0.1.9", 5432))
        formed = uow.replication.form(founder, api.project, founder, ("127.0.1.9", 5432))
        uow.replication.promote(uow.replication.add_replicas(formed, [other]), other)
    response = api.put(f"/instances/{founder}", {"instance": {"replica_of": None}})
    assert response.status_code == 422 and "writer endpoint" in response.text, response.text
    assert api.count("operations", "kind = 'instance.replica.detach'") == 0


def test_synchronous_mode_is_set_where_the_engine_offers_it_and_starts_asynchronous(tmp_path: Path) -> None:
    offered = DEFAULT_OFFERED | {Capability.REPLICATION, Capability.SYNC_REPLICATION}
    for api in build_api(tmp_path, engines={"postgresql": FakeEngine(offered=offered)}):
        source = api.post("/instances", create_body(name="src")).json()["instance"]["id"]
        replica = api.post("/instances", create_body(name="rep")).json()["instance"]["id"]
        for made in (source, replica):
            _active(api, made)
        with api.db.unit_of_work() as uow:
            formed = uow.replication.form(source, api.project, source, ("127.0.1.9", 5432))
            uow.replication.add_replicas(formed, [replica])
            uow.replication.record_health(replica, ReplicaHealth(ReplicaState(streaming=True), observed=1.0))
        response = api.patch(f"/instances/{source}", {"instance": {"replication": {"durability": "eventually"}}})
        assert response.status_code == 400 and "durability" in response.text
        body = {"instance": {"replication": {"mode": "sync", "durability": "available"}}}
        assert api.patch(f"/instances/{source}", body).status_code == 202
        shown = api.get(f"/instances/{source}").json()["instance"]["replication"]
        # Synchronous once the failover watch knows a replica holds every commit: asynchronous until then.
        assert shown["mode"] == "sync" and shown["durability"] == "available"
        assert shown["synchronous"]["state"] == "async" and "since" in shown["synchronous"]
        with api.db.unit_of_work(write=False) as uow:  # the primary's configuration is loaded again
            assert Kind.SET_CONVERGE in [op.kind for op in uow.operations.active_for(source)]
            found = uow.replication.set_of(source)
        assert found is not None and found.synchronous_names == ()  # nothing waits before the watch says so
        with api.db.unit_of_work() as uow:
            assert uow.replication.set_sync(found, SyncState.SYNC, 2.0)
        shown = api.get(f"/instances/{source}").json()["instance"]["replication"]
        assert shown["synchronous"]["state"] == "sync"
        # Back to asynchronous: nothing waits any more.
        assert api.patch(f"/instances/{source}", {"instance": {"replication": {"mode": "async"}}}).status_code == 202
        with api.db.unit_of_work(write=False) as uow:
            found = uow.replication.set_of(source)
        assert found is not None and found.sync is SyncState.ASYNC and found.synchronous_names == ()
        assert "synchronous" not in api.get(f"/instances/{source}").json()["instance"]["replication"]
