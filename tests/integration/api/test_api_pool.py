"""`GET /mgmt/pool`: the warm pool's target and slots, for admins only."""

from __future__ import annotations

from tests.integration.api.api_support import Api
from tests.integration.api.test_api_accounts import fault

from reddwarf.domain.pool import PoolProfile, SlotState


def test_admins_see_the_target_and_every_slot_with_its_state_and_error(api: Api) -> None:
    with api.db.unit_of_work() as uow:
        ready = uow.pool.add(PoolProfile("postgresql", "15", "1", 1))
        uow.pool.mark(ready, SlotState.READY, only_from={SlotState.BUILDING})
        failed = uow.pool.add(PoolProfile("redis", "7.0", "1", 1))
        uow.pool.mark(failed, SlotState.FAILED, only_from={SlotState.BUILDING}, error="redis-server exited (code 1)")
    response = api.get("/mgmt/pool", who="admin", project=api.admin_project)
    assert response.status_code == 200, response.text
    pool = response.json()["pool"]
    assert pool["target"] == {"size": 1, "flavor": "1", "volume_size": 1}
    by_id = {slot["id"]: slot for slot in pool["slots"]}
    assert by_id[ready]["state"] == "ready" and by_id[ready]["datastore"] == "postgresql"
    assert by_id[ready]["version"] == "15" and by_id[ready]["flavor"] == "1" and by_id[ready]["volume_size"] == 1
    assert by_id[failed]["state"] == "failed" and by_id[failed]["error"] == "redis-server exited (code 1)"


def test_a_tenant_is_refused(api: Api) -> None:
    fault(api.get("/mgmt/pool"), "forbidden", 403)
