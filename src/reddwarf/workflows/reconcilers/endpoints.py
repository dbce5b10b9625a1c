"""The sets' stable endpoints as the store says they should be routed (docs/failover.md): the writer endpoint
to the set's primary, the reader endpoint over its healthy replicas (its primary when none is). The runtime
carries the routes out (`Runtime.publish_routes`); every writer reads the store inside the runtime's order, so
the table always follows the newest read.

Who publishes: a failover or a switchover when it holds its set's writer endpoint (before the old primary is
killed or stopped) and when it releases it, as soon as the new primary takes writes (`hold`); a replica's
delete once it has left its set (before its address is given back); and the failover watch whenever what the
store says differs from what it last published (a replica's health, a new reader endpoint, a member gone), and
every `REPUBLISH_EVERY` seconds whatever (a table lost with a reboot).
"""

from __future__ import annotations

import logging
import uuid

from reddwarf.domain.endpoints import Route, Target
from reddwarf.domain.errors import TemporaryError
from reddwarf.domain.instance import Instance
from reddwarf.domain.replication import ReplicationSet, Role
from reddwarf.domain.status import InstanceStatus, OperatingStatus
from reddwarf.store.uow import UnitOfWork
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.lifecycle import allocate_address

log = logging.getLogger(__name__)

REPUBLISH_EVERY = 30.0
_READER_HOLDER = uuid.UUID("6f1d3c2a-5a8e-4d0b-9f6e-1e2d3c4b5a69")


def reader_holder(set_id: str) -> str:
    """The id under which a set's reader endpoint holds its address (an address claim names a holder)."""
    return str(uuid.uuid5(_READER_HOLDER, set_id))


def _target(instance: Instance | None) -> Target | None:
    if instance is None or instance.deleting or instance.endpoint is None:
        return None
    return instance.endpoint.address, instance.endpoint.port


def _serves_reads(instance: Instance | None, found: ReplicationSet) -> bool:
    """A replica the reader endpoint may send a new connection to: running, answering and following."""
    if instance is None or instance.deleting or instance.status is not InstanceStatus.ACTIVE:
        return False
    if instance.operating_status is OperatingStatus.ERROR:
        return False
    member = found.member(instance.id)
    if member is None or member.fenced is not None:
        return False
    return member.health is None or member.health.state.streaming


def routes_by_set(uow: UnitOfWork, sets: list[ReplicationSet] | None = None) -> dict[str, list[Route]]:
    """Every route the store asks for now, by set. A set's writer endpoint leads to its primary, or is refused
    while it is held (its primary being replaced: from a failover's fence or a switchover's stop until the new
    primary takes writes; whoever binds its address meanwhile gets nothing); a fenced member's own address is
    refused too until it rejoins (unless it is the writer endpoint)."""
    by_set: dict[str, list[Route]] = {}
    for found in uow.replication.all_sets() if sets is None else sets:
        primary = _target(uow.instances.get(found.primary_id))
        if primary is None:
            continue
        routes = by_set.setdefault(found.id, [])
        try:
            if found.writer is not None:
                routes.append(Route(found.writer[0], found.writer[1], () if found.writer_held else (primary,)))
            readers: list[Target] = []
            for member in found.members:
                instance = uow.instances.get(member.instance_id)
                own = _target(instance)
                if member.fenced is not None and own is not None and own != found.writer:
                    routes.append(Route(own[0], own[1], ()))
                if member.role is Role.REPLICA and own is not None and _serves_reads(instance, found):
                    readers.append(own)
            if found.reader is not None:
                routes.append(Route(found.reader[0], found.reader[1], tuple(readers) or (primary,)))
        except ValueError as exc:  # an address this runtime cannot route: said, and the other sets still are
            log.error("replication set %s: its endpoints cannot be routed: %s", found.id, exc)
            by_set[found.id] = []
    return by_set


def routes_of(uow: UnitOfWork, sets: list[ReplicationSet] | None = None) -> list[Route]:
    """Every route the store asks for now (of `sets`, when the caller has read them already)."""
    return [route for routes in routes_by_set(uow, sets).values() for route in routes]


def read_routes(deps: ReconcilerDeps) -> list[Route]:
    with deps.db.unit_of_work(write=False) as uow:
        return routes_of(uow)


def publish(deps: ReconcilerDeps) -> None:
    """Route every set's endpoints as the store says now (idempotent)."""
    deps.runtime.publish_routes(lambda: read_routes(deps))


def hold(deps: ReconcilerDeps, instance_id: str, held: bool) -> None:
    """Hold (or release) the writer endpoint of `instance_id`'s set, then route every set as the store says
    (idempotent: a step's retry does it again)."""
    with deps.db.unit_of_work() as uow:
        found = uow.replication.set_of(instance_id)
        if found is not None and found.writer_held != held:
            uow.replication.hold_writer(found.id, held)
    publish(deps)


def ensure_reader(deps: ReconcilerDeps, set_id: str, standard_port: int, offsets: tuple[int, ...] = ()) -> None:
    """Allocate the set's reader endpoint (an address of its own, held under `reader_holder`) and record it on
    the set; nothing when it has one. TemporaryError while no address is free."""
    with deps.db.unit_of_work(write=False) as uow:
        found = uow.replication.get(set_id)
    if found is None or found.reader is not None:
        return
    held = allocate_address(deps, reader_holder(set_id), standard_port, offsets=offsets)
    with deps.db.unit_of_work() as uow:
        current = uow.replication.get(set_id)
        if current is None:  # dissolved meanwhile: the address goes back
            uow.addresses.release(reader_holder(set_id))
            return
        if current.reader is None:
            uow.replication.set_reader(set_id, (str(held["address"]), int(held["port"])))


def writer_holder(set_id: str) -> str:
    """The id under which a set holds its writer endpoint's address once its founder is gone."""
    return str(uuid.uuid5(_READER_HOLDER, f"writer:{set_id}"))


def release_reader(uow: UnitOfWork, set_id: str) -> None:
    """A dissolved set gives its endpoints' addresses back: its reader's, and its writer's if it held it."""
    uow.addresses.release(reader_holder(set_id))
    uow.addresses.release(writer_holder(set_id))


def keep_writer_address(uow: UnitOfWork, instance_id: str) -> None:
    """An instance whose address is a set's writer endpoint is going away (its founder, deleted once another
    member is the primary): the set holds the address from now on, so that it is never given to another
    instance while it still leads to the set's primary."""
    held = uow.addresses.get(instance_id)
    if held is None:
        return
    for found in uow.replication.all_sets():
        if found.writer == held:
            uow.addresses.release(instance_id)
            uow.addresses.claim(writer_holder(found.id), held[0], held[1])
            log.info("replication set %s holds its writer endpoint %s:%s now", found.id, *held)
            return


def publish_quietly(deps: ReconcilerDeps, why: str) -> None:
    """`publish` where a failure must not fail the caller (the watch publishes again within a round)."""
    try:
        publish(deps)
    except TemporaryError as exc:
        log.warning("endpoints not published after %s: %s", why, exc.message)
