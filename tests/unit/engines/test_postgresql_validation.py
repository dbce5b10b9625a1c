"""Validation of instance specs for PostgreSQL: each rule refuses with the offending field named."""

from __future__ import annotations

import pytest

from reddwarf.domain.errors import BadRequest
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.postgresql.validation import canonical_encoding, validate_spec


def _spec(databases: tuple[DatabaseSpec, ...] = (), users: tuple[UserSpec, ...] = ()) -> InstanceSpec:
    return InstanceSpec(
        name="i",
        flavor_id="1",
        volume_size_gb=1,
        datastore="postgresql",
        datastore_version="15",
        databases=databases,
        users=users,
    )


def _user(name: str, *databases: str, password: str = "s3cret-pw") -> UserSpec:
    return UserSpec(name=name, password=Secret(password), databases=databases)


def _refused(spec: InstanceSpec) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        validate_spec(spec)
    return caught.value


def test_a_sound_spec_passes() -> None:
    validate_spec(
        _spec(
            (DatabaseSpec("app"), DatabaseSpec('we"ird; DROP TABLE x; --', "utf-8", "C.UTF-8"), DatabaseSpec("данные")),
            (_user("o'brien", "app", 'we"ird; DROP TABLE x; --'), _user("root"), _user("ユーザー", "данные")),
        )
    )


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 64,
        "é" * 32,
        "bad\nname",
        "tab\tname",
        "nul\0",
        "postgres",
        "reddwarf_admin",
        "template0",
        "template1",
        "pg_stuff",
        "PG_upper",
    ],
)
def test_bad_database_names_name_the_field(name: str) -> None:
    error = _refused(_spec((DatabaseSpec("ok"), DatabaseSpec(name))))
    assert error.field == "instance.databases[1].name"


def test_a_63_byte_name_is_fine() -> None:
    validate_spec(_spec((DatabaseSpec("d" * 63),), (_user("u" * 63),)))


@pytest.mark.parametrize("name", ["", "u" * 64, "a\x07b", "postgres", "reddwarf_admin", "pg_monitor", "public", "none"])
def test_bad_user_names_name_the_field(name: str) -> None:
    error = _refused(_spec(users=(_user("fine"), _user(name))))
    assert error.field == "instance.users[1].name"


def test_unknown_character_set_is_refused() -> None:
    error = _refused(_spec((DatabaseSpec("app", character_set="klingon"),)))
    assert error.field == "instance.databases[0].character_set"
    assert "klingon" in error.message


def test_client_only_encodings_are_refused() -> None:
    assert _refused(_spec((DatabaseSpec("app", character_set="SJIS"),))).field == (
        "instance.databases[0].character_set"
    )


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("utf-8", "UTF8"), ("UTF8", "UTF8"), ("latin1", "LATIN1"), ("ISO-8859-1", "LATIN1"), ("sql_ascii", "SQL_ASCII")],
)
def test_encodings_are_spelled_as_postgresql_does(given: str, canonical: str) -> None:
    assert canonical_encoding(given) == canonical


@pytest.mark.parametrize("collate", ["", "en US", "C'; DROP", "x" * 40, "en_US.UTF-8\n"])
def test_malformed_collations_are_refused(collate: str) -> None:
    error = _refused(_spec((DatabaseSpec("app", collate=collate),)))
    assert error.field == "instance.databases[0].collate"


def test_users_may_only_name_listed_databases() -> None:
    error = _refused(_spec((DatabaseSpec("app"),), (_user("a", "app"), _user("b", "app", "other"))))
    assert error.field == "instance.users[1].databases"
    assert "other" in error.message


def test_duplicate_databases_are_refused() -> None:
    error = _refused(_spec((DatabaseSpec("app"), DatabaseSpec("x"), DatabaseSpec("app"))))
    assert error.field == "instance.databases[2].name"


def test_duplicate_users_are_refused() -> None:
    error = _refused(_spec(users=(_user("a"), _user("a"))))
    assert error.field == "instance.users[1].name"


def test_names_are_case_sensitive_so_case_variants_are_distinct() -> None:
    validate_spec(_spec((DatabaseSpec("App"), DatabaseSpec("app"))))


def test_empty_password_is_refused_without_echoing_it() -> None:
    error = _refused(_spec(users=(_user("a", password=""),)))
    assert error.field == "instance.users[0].password"


def test_refusal_messages_never_hold_the_password() -> None:
    password = "hunter2-very-secret"
    error = _refused(_spec((DatabaseSpec("app"),), (_user("a", "nope", password=password),)))
    assert password not in error.message
