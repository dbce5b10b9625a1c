"""How a replica is seeded (`domain.replication.choose_seed`): a snapshot where the runtime can take one, else
the engine's copy over the network, else a backup; a backup wherever the engine takes one when the operator
asks for it; a refusal that names every way that is closed."""

from __future__ import annotations

import pytest

from reddwarf.domain.replication import Seed, choose_seed

POSTGRESQL = frozenset({Seed.SNAPSHOT, Seed.NETWORK, Seed.BACKUP})
MARIADB = frozenset({Seed.SNAPSHOT, Seed.BACKUP})
REDIS = frozenset({Seed.SNAPSHOT, Seed.NETWORK})
NO_POOL = "no copy-on-write pool"


@pytest.mark.parametrize(("seeds", "refusal", "expected"), [
    (POSTGRESQL, None, Seed.SNAPSHOT),
    (POSTGRESQL, NO_POOL, Seed.NETWORK),
    (MARIADB, None, Seed.SNAPSHOT),
    (MARIADB, NO_POOL, Seed.BACKUP),
    (REDIS, NO_POOL, Seed.NETWORK),
])
def test_auto_takes_the_cheapest_seed_open_here(seeds: frozenset[Seed], refusal: str | None, expected: Seed) -> None:
    assert choose_seed("auto", refusal, seeds, backups_stored=True) is expected


@pytest.mark.parametrize(("seeds", "expected"), [(POSTGRESQL, Seed.BACKUP), (MARIADB, Seed.BACKUP),
                                                 (REDIS, Seed.SNAPSHOT)])
def test_the_operator_may_ask_for_backups_wherever_the_engine_takes_one(seeds: frozenset[Seed], expected: Seed) -> None:
    assert choose_seed("backup", None, seeds, backups_stored=True) is expected


def test_without_a_pool_or_backup_storage_a_mariadb_replica_is_refused_with_every_reason() -> None:
    with pytest.raises(ValueError, match=r"cannot be snapshotted \(no copy-on-write pool\).*no backup storage"):
        choose_seed("auto", NO_POOL, MARIADB, backups_stored=False)
