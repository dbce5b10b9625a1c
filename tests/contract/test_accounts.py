"""Users and databases conformance, for every engine version that declares them: users created with the
instance log in with the engine's own client (and a wrong password is refused); databases created with
it exist, and each user reaches only the databases granted to it."""

from __future__ import annotations

import pytest

from reddwarf.domain.secret import Secret
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

    root = shared.client.accounts.enable_root(shared.id)

    assert shared.client.accounts.root_enabled(shared.id) is True
    adapter.use(address, port, root.name, root.password.reveal(), None)
    shared.client.accounts.disable_root(shared.id)
    with pytest.raises(Refused):
        adapter.use(address, port, root.name, root.password.reveal(), None)


@pytest.mark.capability("databases")
def test_account_writes_sent_without_pause_apply_in_order_before_their_answer(
    shared: Instance, target: Target
) -> None:
    """Trove's guest applied a grant or revoke before answering: a client that sends create-database,
    create-user-with-access-to-it, revoke and then connects, with no pause, is refused at the end."""
    address, port = shared.endpoint()
    adapter = ADAPTERS[target.engine]
    accounts, iid = shared.client.accounts, shared.id
    database, user, password = "ordered_db", "ordered_user", "no pause 'at all'"

    accounts.create_databases(iid, [database])
    accounts.create_user(iid, user, Secret(password), databases=[database])
    adapter.use(address, port, user, password, database)
    accounts.revoke(iid, user, database)
    with pytest.raises(Refused):
        adapter.use(address, port, user, password, database)
    accounts.grant(iid, user, [database])
    adapter.use(address, port, user, password, database)
    accounts.delete_user(iid, user)
    with pytest.raises(Refused):
        adapter.use(address, port, user, password, database)
    accounts.delete_database(iid, database)


@pytest.mark.capability("users")
def test_user_writes_sent_without_pause_apply_before_their_answer(shared: Instance, target: Target) -> None:
    address, port = shared.endpoint()
    adapter = ADAPTERS[target.engine]
    accounts, iid = shared.client.accounts, shared.id
    user, first, second = "quick_user", "first 'password'", "second password"
    database = shared.databases[0] if shared.databases else None

    accounts.create_user(iid, user, Secret(first), databases=[database] if database else [])
    adapter.use(address, port, user, first, database)
    accounts.update_user(iid, user, password=Secret(second))
    with pytest.raises(Refused):
        adapter.use(address, port, user, first, database)
    adapter.use(address, port, user, second, database)
    accounts.delete_user(iid, user)
    with pytest.raises(Refused):
        adapter.use(address, port, user, second, database)


@pytest.mark.capability("root")
def test_root_has_no_host_power_and_none_over_the_admin(shared: Instance, target: Target) -> None:
    address, port = shared.endpoint()

    root = shared.client.accounts.enable_root(shared.id)

    try:
        assert ESCAPES[target.engine](address, port, root.name, root.password.reveal()) == []
    finally:
        shared.client.accounts.disable_root(shared.id)
