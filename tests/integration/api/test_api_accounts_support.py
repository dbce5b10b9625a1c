"""Helpers for the accounts API tests: a fake engine whose `Accounts` keep state in memory
(`tests.fakes.engines.AccountsEngine`), and an in-process worker that runs the durable account operations
the API records (no database server).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api_support import Api, build_api, create_body
from tests.fakes.engines import AccountsEngine
from tests.fakes.runtime import FakeRuntime

from reddwarf.domain.capabilities import Capability
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.conditions import Observation
from reddwarf.domain.instance import Endpoint
from reddwarf.workflows.kernel.worker import Worker
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.worker import handlers


@dataclass
class AccountsApi:
    api: Api
    engines: dict[str, AccountsEngine]
    worker: Worker
    deps: ReconcilerDeps

    def drain(self, timeout: float = 20.0) -> None:
        """Run operations until none is pending or running (deadline: `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            busy = self.worker.run_once()
            if not busy and not self.active():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"operations still active after {timeout}s: {self.api.operations()}")
            if not busy:
                time.sleep(0.01)

    def active(self) -> bool:
        return any(state in ("pending", "running") for _kind, state in self.api.operations())

    def active_instance(self, datastore: str = "postgresql", **create: Any) -> str:
        """An instance as the create would leave it: ACTIVE, HEALTHY, with an address."""
        body = create_body(**create)
        if datastore != "postgresql":
            body["instance"]["datastore"] = {"type": datastore}
        response = self.api.post("/instances", body)
        assert response.status_code == 200, response.text
        instance_id = str(response.json()["instance"]["id"])
        with self.api.db.unit_of_work() as uow:
            for op in uow.operations.active_for(instance_id):
                uow.operations.supersede(instance_id, (op.kind,))
            uow.instances.set_endpoint(instance_id, Endpoint("127.0.1.9", 5432))
            uow.instances.record(instance_id, Observation.READY, "ready", generation=0)
        return instance_id


def build_accounts_api(tmp_path: Path, template: Path, **settings: Any) -> Iterator[AccountsApi]:
    engines = {"postgresql": AccountsEngine(), "redis": AccountsEngine(
        "redis", frozenset({Capability.USERS, Capability.ROOT}),
        [DatastoreVersion(datastore="redis", name="7.0", number="7.0.15", bin_dir="/nonexistent")])}
    runtime = FakeRuntime()
    # The tests run the worker by hand (`drain`): a write must not wait for it to be applied.
    settings.setdefault("account_write_wait", 0.0)
    for api in build_api(tmp_path, template=template, engines=engines, **settings):
        ctx = dataclasses.replace(
            api.ctx, placement_for=lambda i: runtime.placement(i.id, i.endpoint.address, i.endpoint.port),
            branch_refusal=runtime.branch_refusal())
        api.client.app.state.reddwarf = ctx  # type: ignore[attr-defined]
        api.ctx = ctx
        deps = ReconcilerDeps(db=api.db, engines=engines, runtime=runtime,
                              flavors=ctx.flavors)
        worker = Worker(api.db, handlers(deps), lease_ttl=30, poll_interval=0.01, deadline=900)
        yield AccountsApi(api, engines, worker, deps)
