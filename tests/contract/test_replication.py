"""Replication conformance, for every engine version and each of its replication strategies: rows written on a
source before its replica exists and after are on the replica, read as the tenant's own user; the tenant cannot
write on the replica; deleting the replica leaves the source a single instance that takes writes. A strategy
test is skipped (untested) for a version that does not declare it; each strategy's classification comes from
these results.
"""

from __future__ import annotations

import pytest

from tests.contract.targets import Target
from tests.contract.test_backups import DATA, _source
from tests.support.server import ACTIVE_TIMEOUT, DELETE_TIMEOUT, ReddwarfProcesses, wait_for

STRATEGIES = ("streaming",)


@pytest.mark.parametrize("strategy", [pytest.param(name, marks=pytest.mark.capability(f"replication:{name}"))
                                      for name in STRATEGIES])
def test_a_replica_follows_its_source_and_takes_no_write(
    reddwarf: ReddwarfProcesses, target: Target, strategy: str
) -> None:
    data = DATA[target.engine]
    tag = f"{target.engine}-{target.version}".replace(".", "-")
    with reddwarf.tenant() as client:
        source, address, port = _source(client, target, f"rp-{tag}")
        made = [source]
        try:
            data.write(address, port, 1, 200)
            replica = client.create_replicas(f"rp-{tag}-r", source)
            made.append(replica.id)
            view = client.wait_for_instance(replica.id, timeout=ACTIVE_TIMEOUT)
            assert view.source_id == source and client.get_instance(source).replica_ids == [replica.id]
            assert view.address is not None and view.port is not None
            assert data.read(view.address, view.port) == data.read(address, port)
            data.write(address, port, 201, 100)
            expected = data.read(address, port)
            wait_for(lambda: data.read(str(view.address), int(str(view.port))) == expected, 30,
                     "the source's later rows on the replica")
            with pytest.raises(Exception, match=r"(?i)read.only"):
                data.write(view.address, view.port, 1000, 1)
            client.delete_instance(replica.id)
            client.wait_for_delete(replica.id, timeout=DELETE_TIMEOUT)
            made.remove(replica.id)
            assert client.get_instance(source).replica_ids == []
            data.write(address, port, 301, 10)
        finally:
            for instance_id in made:
                client.delete_instance(instance_id)
            for instance_id in made:
                client.wait_for_delete(instance_id, timeout=DELETE_TIMEOUT)
