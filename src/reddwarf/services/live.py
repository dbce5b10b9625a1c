"""Live requests from the API to a running instance's server (account reads, root enable, the checks a backup
request needs), bounded per project and per silent server (`LiveReadGate`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from reddwarf.domain.errors import PermanentError, ServiceUnavailable, TemporaryError, UnprocessableEntity
from reddwarf.domain.instance import Instance
from reddwarf.domain.secret import ADMIN_SECRET, Secret
from reddwarf.domain.workload import Placement
from reddwarf.services.context import ServiceContext

logger = logging.getLogger(__name__)

# Seconds a server that did not answer a live request is not asked again (requests answer 503 at once).
HOLD_OFF = 5.0


@contextmanager
def reach(ctx: ServiceContext, instance: Instance) -> Iterator[tuple[Placement, Secret]]:
    """The instance's placement and admin password, for one live request to its server. The engine's
    `TemporaryError` inside becomes 503 (and the server is not asked again for `HOLD_OFF` seconds), its
    `PermanentError` 422; a project has at most `live_reads_per_project` requests in flight."""
    if ctx.placement_for is None or instance.endpoint is None:
        raise ServiceUnavailable(f"Instance {instance.id} cannot be reached from this API server.")
    gate = ctx.live_reads
    if gate.silent(instance.id):
        # It just timed out on an earlier request: answer now rather than hold a thread for another timeout.
        raise ServiceUnavailable(
            f"The database server of instance {instance.id} is not answering; try again in a few seconds."
        )
    project = instance.project_id
    if not gate.enter(project, ctx.settings.live_reads_per_project):
        raise ServiceUnavailable(
            f"Too many requests to database servers of project {project} are in flight; try again."
        )
    try:
        with ctx.db.unit_of_work(write=False) as uow:
            admin_password = uow.secrets.get(instance.id, ADMIN_SECRET)
        if admin_password is None:
            raise UnprocessableEntity(f"Instance {instance.id} has lost its admin credential.")
        yield ctx.placement_for(instance), admin_password
        gate.answered(instance.id)
    except TemporaryError as exc:
        gate.went_silent(instance.id, HOLD_OFF)
        logger.warning("instance %s: the database server did not answer: %s", instance.id, exc.message)
        # The engine's message names host paths (the socket's); the log has it, the tenant gets none of it.
        raise ServiceUnavailable(f"The database server of instance {instance.id} did not answer; try again.") from exc
    except PermanentError as exc:
        raise UnprocessableEntity(exc.message) from exc
    finally:
        gate.leave(project)
