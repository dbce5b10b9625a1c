"""Users and databases conformance, for every engine version that declares them: users created with the
instance log in with the engine's own client (and a wrong password is refused); databases created with
it exist, and each user reaches only the databases granted to it."""

from __future__ import annotations

import pytest

from tests.contract.clients import ADAPTERS, Refused
from tests.contract.conftest import Instance
from tests.contract.escapes import ESCAPES
from tests.contract.targets import Target


@pytest.mark.capability("users")
def test_created_users_log_in_and_a_wrong_password_is_refused(shared: Instance, target: Target) -> None:
    address, port = shared.endpoint()
    adapter = ADAPTERS[target.engine]
    assert shared.accounts

    for account in shared.accounts:
        adapter.use(address, port, account.user, account.password, account.database)
        with pytest.raises(Refused):
            adapter.use(address, port, account.user, account.password + "-wrong", account.database)


@pytest.mark.capability("databases")
def test_created_databases_exist_and_users_reach_only_granted_ones(shared: Instance, target: Target) -> None:
    address, port = shared.endpoint()
    adapter = ADAPTERS[target.engine]
    reached = set()

    for account in shared.accounts:
        assert account.database is not None and account.denied is not None
        adapter.use(address, port, account.user, account.password, account.database)
        reached.add(account.database)
        with pytest.raises(Refused):
            adapter.use(address, port, account.user, account.password, account.denied)

    assert reached == set(shared.databases)


@pytest.mark.capability("root")
def test_enabled_root_logs_in_and_disabled_root_is_refused(shared: Instance, target: Target) -> None:
    address, port = shared.endpoint()
    adapter = ADAPTERS[target.engine]

    response = shared.client.post(f"/instances/{shared.id}/root")

    assert response.status_code == 200, response.text
    user = response.json()["user"]
    assert shared.client.get(f"/instances/{shared.id}/root").json()["rootEnabled"] is True
    adapter.use(address, port, user["name"], user["password"], None)
    assert shared.client.delete(f"/instances/{shared.id}/root").status_code == 204
    with pytest.raises(Refused):
        adapter.use(address, port, user["name"], user["password"], None)


@pytest.mark.capability("databases")
def test_account_writes_sent_without_pause_apply_in_order_before_their_answer(
    shared: Instance, target: Target
) -> None:
    """Trove's guest applied a grant or revoke before answering: a client that sends create-database,
    create-user-with-access-to-it, revoke and then connects, with no pause, is refused at the end."""
    address, port = shared.endpoint()
    adapter = ADAPTERS[target.engine]
    client, base = shared.client, f"/instances/{shared.id}"
    database, user, password = "ordered_db", "ordered_user", "no pause 'at all'"

    assert client.post(f"{base}/databases", json={"databases": [{"name": database}]}).status_code == 202
    created = client.post(f"{base}/users", json={"users": [
        {"name": user, "password": password, "databases": [{"name": database}]}]})
    assert created.status_code == 202, created.text
    adapter.use(address, port, user, password, database)
    assert client.delete(f"{base}/users/{user}/databases/{database}").status_code == 202
    with pytest.raises(Refused):
        adapter.use(address, port, user, password, database)
    granted = client.put(f"{base}/users/{user}/databases", json={"databases": [{"name": database}]})
    assert granted.status_code == 202, granted.text
    adapter.use(address, port, user, password, database)
    assert client.delete(f"{base}/users/{user}").status_code == 202
    with pytest.raises(Refused):
        adapter.use(address, port, user, password, database)
    assert client.delete(f"{base}/databases/{database}").status_code == 202


@pytest.mark.capability("users")
def test_user_writes_sent_without_pause_apply_before_their_answer(shared: Instance, target: Target) -> None:
    address, port = shared.endpoint()
    adapter = ADAPTERS[target.engine]
    client, base = shared.client, f"/instances/{shared.id}"
    user, first, second = "quick_user", "first 'password'", "second password"
    database = shared.databases[0] if shared.databases else None
    access = {"databases": [{"name": database}]} if database else {}

    created = client.post(f"{base}/users", json={"users": [{"name": user, "password": first, **access}]})
    assert created.status_code == 202, created.text
    adapter.use(address, port, user, first, database)
    changed = client.put(f"{base}/users", json={"users": [{"name": user, "password": second}]})
    assert changed.status_code == 202, changed.text
    with pytest.raises(Refused):
        adapter.use(address, port, user, first, database)
    adapter.use(address, port, user, second, database)
    assert client.delete(f"{base}/users/{user}").status_code == 202
    with pytest.raises(Refused):
        adapter.use(address, port, user, second, database)


@pytest.mark.capability("root")
def test_root_has_no_host_power_and_none_over_the_admin(shared: Instance, target: Target) -> None:
    address, port = shared.endpoint()

    response = shared.client.post(f"/instances/{shared.id}/root")

    assert response.status_code == 200, response.text
    user = response.json()["user"]
    try:
        assert ESCAPES[target.engine](address, port, user["name"], user["password"]) == []
    finally:
        assert shared.client.delete(f"/instances/{shared.id}/root").status_code == 204
