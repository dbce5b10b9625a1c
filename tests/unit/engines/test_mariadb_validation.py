"""The MariaDB engine's spec validation: names, hosts, character sets and collations."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reddwarf.domain.errors import BadRequest
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.mariadb.validation import charset_of_collation, validate_spec

BASE = InstanceSpec(name="i", flavor_id="1", volume_size_gb=1, datastore="mariadb", datastore_version="10.11")


def user(name: str = "alice", host: str = "%", password: str = "pw", databases: tuple[str, ...] = ()) -> UserSpec:
    return UserSpec(name, Secret(password), host=host, databases=databases)


def refused(spec: InstanceSpec) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        validate_spec(spec)
    return caught.value


def test_a_plain_spec_passes() -> None:
    validate_spec(
        replace(
            BASE,
            databases=(DatabaseSpec("app"), DatabaseSpec("данные ✓", "UTF8MB4", "utf8mb4_bin")),
            users=(user(databases=("app",)), user("ユーザー", host="10.0.%", databases=("данные ✓",))),
        )
    )


@pytest.mark.parametrize(
    "name",
    ["we`ird'; DROP DATABASE mysql; --", 'dq"', "a-b c", "x" * 64, "app_1", "100%"],
)
def test_database_names_that_work_literally(name: str) -> None:
    validate_spec(replace(BASE, databases=(DatabaseSpec(name),)))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("x" * 65, "at most 64"),
        ("a/b", "'/'"),
        ("a\\b", "'\\\\'"),
        ("a.b", "'.'"),
        ("tab\there", "control"),
        ("trailing ", "end with a space"),
        ("mysql", "reserved"),
        ("INFORMATION_SCHEMA", "reserved"),
        ("performance_schema", "reserved"),
        ("sys", "reserved"),
        ("mariadb.sys", "'.'"),
        ("#mysql50#old", "reserved"),
        ("smile\U0001f600", "BMP"),
        ("ж" * 60, "directory"),
    ],
)
def test_bad_database_names_are_refused(name: str, message: str) -> None:
    error = refused(replace(BASE, databases=(DatabaseSpec("ok"), DatabaseSpec(name))))
    assert error.field == "instance.databases[1].name"
    assert message in error.message


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("u" * 33, "at most 32"),
        ("root", "reserved"),
        ("Reddwarf_Admin", "reserved"),
        ("mariadb.sys", "reserved"),
        ("PUBLIC", "reserved"),
        ("new\nline", "control"),
        (" padded", "space"),
        ("emoji\U0001f600", "BMP"),
    ],
)
def test_bad_user_names_are_refused(name: str, message: str) -> None:
    error = refused(replace(BASE, users=(user("fine"), user(name))))
    assert error.field == "instance.users[1].name"
    assert message in error.message


def test_user_names_of_32_characters_with_quotes_pass() -> None:
    validate_spec(replace(BASE, users=(user("o'brien `q`; x" + "y" * 18),)))


@pytest.mark.parametrize(
    "host", ["%", "localhost", "127.0.0.1", "10.0.%", "192.168.1._", "10.0.0.0/255.0.0.0", "::1", "fe80::%"]
)
def test_valid_hosts(host: str) -> None:
    validate_spec(replace(BASE, users=(user(host=host),)))


@pytest.mark.parametrize("host", ["", "db.example.com", "10.0.0.0/8", "a'b", "%; DROP", "1.2.3.4/255.0.0.x", "h" * 256])
def test_invalid_hosts_are_refused(host: str) -> None:
    error = refused(replace(BASE, users=(user(host=host),)))
    assert error.field == "instance.users[0].host"


def test_the_same_name_on_two_hosts_is_two_accounts() -> None:
    validate_spec(replace(BASE, users=(user(host="%"), user(host="127.0.0.1"))))
    error = refused(replace(BASE, users=(user(), user())))
    assert error.field == "instance.users[1].name" and "twice" in error.message


def test_passwords_and_database_lists_are_checked() -> None:
    assert refused(replace(BASE, users=(user(password=""),))).field == "instance.users[0].password"
    assert refused(replace(BASE, users=(user(password="a\0b"),))).field == "instance.users[0].password"
    assert refused(replace(BASE, users=(user(password="p" * 513),))).field == "instance.users[0].password"
    error = refused(replace(BASE, users=(user(databases=("missing",)),)))
    assert error.field == "instance.users[0].databases" and "missing" in error.message
    spec = replace(BASE, databases=(DatabaseSpec("app"),), users=(user(databases=("app", "app")),))
    assert refused(spec).field == "instance.users[0].databases"
    assert (
        refused(replace(BASE, databases=(DatabaseSpec("a"), DatabaseSpec("a")))).field == "instance.databases[1].name"
    )


@pytest.mark.parametrize(
    ("charset", "collate"),
    [("utf8mb4", None), ("latin1", "latin1_swedish_ci"), (None, "utf8mb4_unicode_520_ci"), ("utf8", "utf8mb3_bin"),
     ("UTF-8", None), ("binary", "binary"), (None, "utf16le_general_ci")],
)  # fmt: skip
def test_known_character_sets_and_collations_pass(charset: str | None, collate: str | None) -> None:
    validate_spec(replace(BASE, databases=(DatabaseSpec("d", charset, collate),)))


@pytest.mark.parametrize(
    ("charset", "collate", "field"),
    [
        ("klingon", None, "character_set"),
        ("utf8mb4; DROP", None, "character_set"),
        ("utf8mb4", "latin1_swedish_ci", "collate"),
        (None, "nocharset_ci", "collate"),
        (None, "utf8mb4_bin; DROP DATABASE x", "collate"),
        ("latin1", "", "collate"),
    ],
)
def test_unknown_or_mismatched_character_sets_are_refused(charset: str | None, collate: str | None, field: str) -> None:
    error = refused(replace(BASE, databases=(DatabaseSpec("d", charset, collate),)))
    assert error.field == f"instance.databases[0].{field}"


def test_a_collation_belongs_to_its_longest_charset_prefix() -> None:
    assert charset_of_collation("utf8mb4_bin") == "utf8mb4"
    assert charset_of_collation("utf16le_general_ci") == "utf16le"
    assert charset_of_collation("utf8_general_ci") == "utf8"
    assert charset_of_collation("nope_ci") is None
