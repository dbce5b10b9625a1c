"""A user named `root` is refused at create on every engine whose root account is named root.

The root API manages that account (enable, disable, the root history the management API shows), so a tenant
user of the same name would make "root was enabled" ambiguous. The users API refused it already; an
instance create did not on PostgreSQL and Redis. Real server, real engines: the refusal is the engine's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reddwarf.client import ReddwarfAPIError, UserRequest
from reddwarf.domain.secret import Secret
from tests.support.server import ReddwarfProcesses, running_plane

ENGINES = [("postgresql", "15"), ("mariadb", "10.11"), ("redis", "7.0")]


@pytest.fixture(scope="module")
def reddwarf() -> Iterator[ReddwarfProcesses]:
    with running_plane("root-name", "127.0.97.0/24") as procs:
        yield procs


@pytest.mark.parametrize(("datastore", "version"), ENGINES, ids=[f"{d}-{v}" for d, v in ENGINES])
@pytest.mark.parametrize("name", ["root", "ROOT"])
def test_a_user_named_root_is_refused_at_create(
    reddwarf: ReddwarfProcesses, datastore: str, version: str, name: str
) -> None:
    user = UserRequest(name=name, password=Secret("a-long-enough-password-1"))
    with reddwarf.tenant() as client:
        with pytest.raises(ReddwarfAPIError) as refused:
            client.create_instance(f"rootname-{datastore}", "1", 1, datastore=datastore, version=version, users=[user])
        assert (refused.value.status, refused.value.fault_name) == (400, "badRequest")
        assert "reserved" in refused.value.message, refused.value.message
        listed = client.list_instances(all=True)
    assert f"rootname-{datastore}" not in [item.name for item in listed]
