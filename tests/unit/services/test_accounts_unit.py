"""Pure parts of the accounts use cases: Trove's `{user}` references, live pagination, the spec mirror."""

from __future__ import annotations

from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.services.accounts import parse_user_ref
from reddwarf.workflows.reconcilers.accounts import mirror_spec


def test_user_refs_as_trove_reads_them() -> None:
    assert parse_user_ref("alice") == ("alice", "%")
    assert parse_user_ref("alice@10.0.0.1") == ("alice", "10.0.0.1")
    assert parse_user_ref("a@b@%") == ("a@b", "%")
    assert parse_user_ref("alice@") == ("alice@", "%")


def _spec() -> InstanceSpec:
    return InstanceSpec(
        name="i", flavor_id="1", volume_size_gb=1, datastore="postgresql", datastore_version="15",
        databases=(DatabaseSpec("app"), DatabaseSpec("b")),
        users=(UserSpec("alice", Secret("old"), databases=("app", "b")),),
    )


def test_mirror_follows_changes_to_create_users_only() -> None:
    spec = _spec()
    renamed = mirror_spec(spec, "instance.users.update",
                          {"name": "alice", "host": "%", "new_name": "al", "password": True},
                          {"password": Secret("new")})
    assert (renamed.users[0].name, renamed.users[0].password.reveal()) == ("al", "new")
    revoked = mirror_spec(spec, "instance.users.revoke", {"name": "alice", "host": "%", "database": "b"}, {})
    assert revoked.users[0].databases == ("app",)
    dropped = mirror_spec(spec, "instance.databases.delete", {"name": "app"}, {})
    assert dropped.users[0].databases == ("b",) and [d.name for d in dropped.databases] == ["b"]
    gone = mirror_spec(spec, "instance.users.delete", {"name": "alice", "host": "%"}, {})
    assert gone.users == ()
    other = mirror_spec(spec, "instance.users.create", {"users": [{"name": "bob", "host": "%"}]},
                        {"password:0": Secret("x")})
    assert other == spec
