"""Health of the control plane itself, for `/healthcheck`: can the metadata store answer a query?"""

from __future__ import annotations

import logging

from reddwarf.domain.errors import StoreUnavailable
from reddwarf.services.context import ServiceContext

logger = logging.getLogger(__name__)

_PROBE_ID = "00000000-0000-0000-0000-000000000000"


def store_reachable(ctx: ServiceContext) -> bool:
    """True when a read-only unit of work against the store succeeds."""
    try:
        with ctx.db.unit_of_work(write=False) as uow:
            uow.operations.get(_PROBE_ID)
    except StoreUnavailable:  # the store logged why; a load balancer probes every few seconds
        return False
    # The probe's whole purpose is to turn any store failure (driver, network, disk) into "unhealthy".
    except Exception:
        logger.warning("healthcheck: the metadata store is unreachable", exc_info=True)
        return False
    return True
