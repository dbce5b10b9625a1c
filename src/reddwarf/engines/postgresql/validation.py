"""Pure validation of an instance spec against PostgreSQL's rules for database and role names.

Every refusal is a `BadRequest` naming the field (`instance.databases[0].name`, `instance.users[1].name`,
`instance.users[1].databases`; `users[0].host` for the accounts API's `validate_users`), so the API can
answer with a message the tenant can act on.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from reddwarf.domain.errors import BadRequest
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.engines.naming import check_databases, check_user_databases

MAX_NAME_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL silently truncates longer identifiers

RESERVED_NAMES = frozenset({
    "postgres", "reddwarf_admin", "reddwarf_orphans", "reddwarf_replicator", "template0", "template1",
})
# PostgreSQL itself refuses these as role names.
RESERVED_ROLE_NAMES = frozenset({"public", "none"})
ROOT_USER = "root"  # the superuser of the root API: reserved in the accounts API
ANY_HOST = "%"

# Server encodings (PostgreSQL's "Server = Yes" character sets); the key is the normalised spelling.
SERVER_ENCODINGS: dict[str, str] = {
    name.replace("_", "").lower(): name
    for name in (
        "EUC_CN",
        "EUC_JP",
        "EUC_JIS_2004",
        "EUC_KR",
        "EUC_TW",
        "ISO_8859_5",
        "ISO_8859_6",
        "ISO_8859_7",
        "ISO_8859_8",
        "KOI8R",
        "KOI8U",
        "LATIN1",
        "LATIN2",
        "LATIN3",
        "LATIN4",
        "LATIN5",
        "LATIN6",
        "LATIN7",
        "LATIN8",
        "LATIN9",
        "LATIN10",
        "MULE_INTERNAL",
        "SQL_ASCII",
        "UTF8",
        "WIN866",
        "WIN874",
        "WIN1250",
        "WIN1251",
        "WIN1252",
        "WIN1253",
        "WIN1254",
        "WIN1255",
        "WIN1256",
        "WIN1257",
        "WIN1258",
    )
}
_ENCODING_ALIASES = {
    "unicode": "UTF8",
    "iso88591": "LATIN1",
    "iso88592": "LATIN2",
    "iso88593": "LATIN3",
    "iso88594": "LATIN4",
    "iso88599": "LATIN5",
    "iso885910": "LATIN6",
    "iso885913": "LATIN7",
    "iso885914": "LATIN8",
    "iso885915": "LATIN9",
    "iso885916": "LATIN10",
    "koi8": "KOI8R",
    "win": "WIN1251",
    "alt": "WIN866",
}

# A POSIX locale name: language[_territory][.codeset][@modifier], or C / POSIX / C.UTF-8.
_LOCALE = re.compile(r"^[A-Za-z]{1,8}(_[A-Za-z0-9]{2,3})?(\.[A-Za-z0-9_-]{1,20})?(@[A-Za-z0-9_]{1,20})?$")


def canonical_encoding(character_set: str) -> str | None:
    """PostgreSQL's name for a server encoding spelled any usual way ("utf-8" -> "UTF8"); None if unknown."""
    key = re.sub(r"[^0-9a-z]", "", character_set.lower())
    return SERVER_ENCODINGS.get(key) or _ENCODING_ALIASES.get(key)


def valid_locale(collate: str) -> bool:
    """True when `collate` has the shape of a locale name (whether it is installed is the server's call)."""
    return bool(_LOCALE.fullmatch(collate))


def name_problem(name: str, *, role: bool) -> str | None:
    """Why `name` cannot name a database (or, with `role`, a user); None when it is fine."""
    kind = "user" if role else "database"
    if not name:
        return f"The {kind} name must not be empty."
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"The {kind} name must be at most {MAX_NAME_BYTES} bytes long in UTF-8."
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        return f"The {kind} name must not contain control characters."
    if name in RESERVED_NAMES or name.lower().startswith("pg_"):
        return f"The {kind} name {name!r} is reserved."
    if role and name.lower() in RESERVED_ROLE_NAMES:
        return f"The user name {name!r} is reserved."
    return None


def _validate_database(prefix: str, database: DatabaseSpec) -> None:
    problem = name_problem(database.name, role=False)
    if problem:
        raise BadRequest(problem, field=f"{prefix}.name")
    if database.character_set is not None and canonical_encoding(database.character_set) is None:
        raise BadRequest(
            f"Unknown PostgreSQL character set {database.character_set!r}; use a server encoding such as UTF8.",
            field=f"{prefix}.character_set",
        )
    if database.collate is not None and not valid_locale(database.collate):
        raise BadRequest(
            f"Invalid collation {database.collate!r}; use a locale name such as C or C.UTF-8.",
            field=f"{prefix}.collate",
        )


def password_problem(password: str) -> str | None:
    """Why `password` cannot be a role's password; None when it is fine (never quotes the password)."""
    if not password:
        return "The user password must not be empty."
    if "\0" in password:
        return "The user password must not contain NUL characters."
    return None


def _validate_user(prefix: str, user: UserSpec, database_names: set[str] | None) -> None:
    """`database_names` are the databases a user may name (a spec's); None: any valid name (accounts API)."""
    problem = name_problem(user.name, role=True)
    if problem:
        raise BadRequest(problem, field=f"{prefix}.name")
    problem = password_problem(user.password.reveal())
    if problem:
        raise BadRequest(problem, field=f"{prefix}.password")
    check_user_databases(prefix, user, database_names, lambda name: name_problem(name, role=False))


def validate_databases(databases: Sequence[DatabaseSpec], field: str = "databases") -> set[str]:
    """Raise `BadRequest` naming `field[i].<attribute>` for a database PostgreSQL could not create as asked.

    Returns the databases' names.
    """
    return check_databases(databases, field, _validate_database)


def host_problem(host: str) -> str | None:
    """PostgreSQL roles have no host: only Trove's `%` (any host) is accepted."""
    if host != ANY_HOST:
        return f"postgresql does not support per-host users: the host must be {ANY_HOST!r}, not {host!r}."
    return None


def account_name_problem(name: str) -> str | None:
    """`name_problem` for the accounts API, which also reserves `root` (managed by the root API)."""
    if name.lower() == ROOT_USER:
        return f"The user name {name!r} is reserved; use the root API to manage the superuser."
    return name_problem(name, role=True)


def validate_users(users: Sequence[UserSpec], field: str = "users") -> None:
    """Raise `BadRequest` naming `field[i].<attribute>` for a user the accounts API cannot create as asked.

    The rules of `validate_spec`, plus: `root` is reserved and the host must be `%`. Databases a user
    names must be valid names; whether they exist is the live instance's answer, not this pure check's.
    """
    user_names: set[str] = set()
    for index, user in enumerate(users):
        prefix = f"{field}[{index}]"
        problem = account_name_problem(user.name)
        if problem:
            raise BadRequest(problem, field=f"{prefix}.name")
        problem = host_problem(user.host)
        if problem:
            raise BadRequest(problem, field=f"{prefix}.host")
        _validate_user(prefix, user, None)
        if user.name in user_names:
            raise BadRequest(f"User {user.name!r} is listed twice.", field=f"{prefix}.name")
        user_names.add(user.name)


def validate_spec(spec: InstanceSpec) -> None:
    """Raise `BadRequest` naming the field for anything PostgreSQL could not honour as asked."""
    database_names = validate_databases(spec.databases, "instance.databases")
    user_names: set[str] = set()
    for index, user in enumerate(spec.users):
        _validate_user(f"instance.users[{index}]", user, database_names)
        if user.name in user_names:
            raise BadRequest(f"User {user.name!r} is listed twice.", field=f"instance.users[{index}].name")
        user_names.add(user.name)
