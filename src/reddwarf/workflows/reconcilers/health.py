"""The health sweep: observe every running instance, record what changed, enqueue a repair for a dead server.

Runs in every worker on an interval. It never starts a server itself: it enqueues `instance.reconcile`, which
takes a lease like any operation, so two workers sweeping at once cannot both restart one server.
"""

from __future__ import annotations

import logging

from reddwarf.domain.instance import Instance
from reddwarf.domain.status import InstanceStatus, OperatingStatus
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.instances import REPAIR, tenant_probe

log = logging.getLogger(__name__)

WATCHED = frozenset({InstanceStatus.ACTIVE, InstanceStatus.SHUTDOWN})


class HealthSweep:
    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def __call__(self) -> None:
        with self.deps.db.unit_of_work(write=False) as uow:
            instances = [
                i for i in uow.instances.list(None)
                if i.status in WATCHED and not i.deleting and i.endpoint is not None
            ]
        for instance in instances:
            try:
                self.check(instance)
            except Exception:  # loop boundary: one broken instance must not stop the sweep
                log.exception("health check of instance %s failed", instance.id)

    def check(self, instance: Instance) -> None:
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            if uow.operations.active_for(instance.id):
                return
        placement = deps.placement(instance)
        observation = deps.runtime.observe(placement)
        if not observation.running:
            with deps.db.unit_of_work() as uow:
                if uow.operations.active_for(instance.id):
                    return
                uow.instances.set_status(
                    instance.id, InstanceStatus.SHUTDOWN, OperatingStatus.SHUTDOWN,
                    volume_used_bytes=observation.volume_used_bytes,
                )
                uow.events.add(instance.id, "SHUTDOWN", f"server not running: {observation.exit_reason}")
                uow.operations.enqueue(REPAIR, instance.id)
            log.warning("instance %s: server not running (%s); repair enqueued", instance.id,
                        observation.exit_reason)
            return
        healthy = tenant_probe(deps, instance, placement)
        operating = OperatingStatus.HEALTHY if healthy else OperatingStatus.ERROR
        if operating != instance.operating_status or observation.volume_used_bytes != instance.volume_used_bytes:
            with deps.db.unit_of_work() as uow:
                uow.instances.set_status(
                    instance.id, instance.status, operating, volume_used_bytes=observation.volume_used_bytes
                )
                if operating != instance.operating_status:
                    uow.events.add(instance.id, operating.value or "UNKNOWN",
                                   "endpoint answers" if healthy else "endpoint does not answer")
