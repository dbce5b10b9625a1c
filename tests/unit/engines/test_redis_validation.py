"""Redis's spec rules: no databases, ACL user names, passwords, hosts; each refusal names its field."""

from __future__ import annotations

import pytest

from reddwarf.domain.errors import BadRequest
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.redis.validation import MAX_NAME_LENGTH, name_problem, validate_spec


def spec(*users: UserSpec, databases: tuple[DatabaseSpec, ...] = ()) -> InstanceSpec:
    return InstanceSpec("c", "1", 1, "redis", "7.0", databases=databases, users=users)


def user(name: str = "alice", password: str = "pw", **kwargs: object) -> UserSpec:
    return UserSpec(name, Secret(password), **kwargs)  # type: ignore[arg-type]


def refusal(instance: InstanceSpec) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        validate_spec(instance)
    return caught.value


def test_a_plain_spec_and_tenant_users_pass() -> None:
    validate_spec(spec())
    validate_spec(spec(user("alice"), user("bob.smith@example"), user("x" * MAX_NAME_LENGTH), user("josé")))


def test_databases_are_refused_naming_the_field() -> None:
    error = refusal(spec(databases=(DatabaseSpec("app"),)))
    assert "redis does not support databases" in error.message
    assert error.field == "instance.databases"


def test_user_databases_are_refused_naming_the_field() -> None:
    error = refusal(spec(user("alice"), user("bob", databases=("app",))))
    assert "redis does not support databases" in error.message
    assert error.field == "instance.users[1].databases"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "empty"),
        ("x" * (MAX_NAME_LENGTH + 1), "at most 64"),
        ("a b", "spaces"),
        ("a\tb", "control"),
        ("a\u00a0b", "spaces"),
        ("a\x7fb", "control"),
        ("default", "reserved"),
        ("Default", "reserved"),
        ("reddwarf_admin", "reserved"),
    ],
)
def test_bad_user_names_are_refused(name: str, words: str) -> None:
    assert words in (name_problem(name) or "")
    error = refusal(spec(user(name)))
    assert error.field == "instance.users[0].name"


def test_empty_password_is_refused() -> None:
    assert refusal(spec(user(password=""))).field == "instance.users[0].password"


def test_a_host_other_than_any_is_refused() -> None:
    assert refusal(spec(user(host="10.0.0.1"))).field == "instance.users[0].host"


def test_duplicate_users_are_refused() -> None:
    assert refusal(spec(user("alice"), user("alice"))).field == "instance.users[1].name"
