"""Pure validation of an instance spec against MariaDB's rules for databases, users, hosts and charsets.

Every refusal is a `BadRequest` naming the field (`instance.databases[0].name`, `instance.users[1].host`,
...), so the API can answer 400 with a message the tenant can act on. Choices made here:

- User names: at most 32 characters, although MariaDB takes 80 (and 128 in newer releases): MySQL-family
  replicas, `CHANGE MASTER TO MASTER_USER` on other servers and many client tools stop at 32.
- Database names: at most 64 characters, no `/`, `\\`, `.`, control characters or trailing space (MariaDB
  stores a database as a directory), and short enough once MariaDB encodes it as a file name.
- Hosts: `%`, `localhost`, an IPv4/IPv6 address or pattern with `%`/`_` wildcards, or `address/netmask`.
  Host names are refused: the server runs with `skip-name-resolve`, so they would never match.
- Names hold no character outside Unicode's BMP: MariaDB keeps identifiers and account names in utf8mb3.
- Character sets: a static list of MariaDB 10.11's; a collation must belong to the character set.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Sequence

from reddwarf.domain.errors import BadRequest
from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.engines.naming import check_databases, check_user_databases

MAX_USER_NAME = 32
MAX_DATABASE_NAME = 64
MAX_HOST = 255
MAX_ENCODED_NAME = 255  # a database is a directory: NAME_MAX of the file system
MAX_PASSWORD = 512

RESERVED_NAMES = frozenset(
    {"mysql", "information_schema", "performance_schema", "sys", "root", "reddwarf_admin", "mariadb.sys",
     "reddwarf_replication"}
)
RESERVED_USER_NAMES = RESERVED_NAMES | {"public", "none", "current_user", "current_role"}
_DATABASE_FORBIDDEN = frozenset("/\\.")
_BMP_MAX = 0xFFFF  # MariaDB stores identifiers and account names as utf8mb3: 3-byte characters at most

# MariaDB 10.11's character sets (SHOW CHARACTER SET); `utf8` is an alias of utf8mb3 there.
CHARACTER_SETS = frozenset(
    {
        "armscii8", "ascii", "big5", "binary", "cp1250", "cp1251", "cp1256", "cp1257", "cp850", "cp852",
        "cp866", "cp932", "dec8", "eucjpms", "euckr", "gb2312", "gbk", "geostd8", "greek", "hebrew", "hp8",
        "keybcs2", "koi8r", "koi8u", "latin1", "latin2", "latin5", "latin7", "macce", "macroman", "sjis",
        "swe7", "tis620", "ucs2", "ujis", "utf16", "utf16le", "utf32", "utf8", "utf8mb3", "utf8mb4",
    }
)  # fmt: skip
DEFAULT_CHARACTER_SET = "utf8mb4"
_COLLATION = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")
# Host patterns: IPv4 (with % and _ wildcards), IPv6 (with wildcards), optionally /netmask.
_HOST_PATTERN = re.compile(r"^[0-9A-Fa-f.:%_]+$")


def normalise_charset(name: str) -> str:
    """The lower-case spelling MariaDB uses ("UTF8MB4" -> "utf8mb4"; "utf-8" -> "utf8")."""
    return name.strip().lower().replace("-", "")


def charset_of_collation(collation: str) -> str | None:
    """The character set a collation belongs to (longest matching prefix), e.g. latin1_swedish_ci -> latin1."""
    if collation == "binary":
        return "binary"
    candidates = [cs for cs in CHARACTER_SETS if collation.startswith(cs + "_")]
    return max(candidates, key=len) if candidates else None


def _same_charset(a: str, b: str) -> bool:
    alias = {"utf8": "utf8mb3"}
    return alias.get(a, a) == alias.get(b, b)


def encoded_length(name: str) -> int:
    """Length of `name` once MariaDB encodes it as a file name (ASCII letters, digits, `_` kept; others ~5)."""
    return sum(1 if (ch.isascii() and (ch.isalnum() or ch == "_")) else 5 for ch in name)


def database_name_problem(name: str) -> str | None:
    if not name:
        return "The database name must not be empty."
    if len(name) > MAX_DATABASE_NAME:
        return f"The database name must be at most {MAX_DATABASE_NAME} characters long."
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        return "The database name must not contain control characters."
    if any(ord(ch) > _BMP_MAX for ch in name):
        return "The database name must not contain characters outside Unicode's BMP (such as emoji)."
    bad = sorted(_DATABASE_FORBIDDEN.intersection(name))
    if bad:
        return "The database name must not contain " + " or ".join(repr(ch) for ch in bad) + "."
    if name != name.rstrip():
        return "The database name must not end with a space."
    if name.lower() in RESERVED_NAMES or name.startswith("#mysql50#"):
        return f"The database name {name!r} is reserved."
    if encoded_length(name) > MAX_ENCODED_NAME:
        return "The database name is too long once stored as a directory; use fewer non-ASCII characters."
    return None


def user_name_problem(name: str) -> str | None:
    if not name:
        return "The user name must not be empty."
    if len(name) > MAX_USER_NAME:
        return f"The user name must be at most {MAX_USER_NAME} characters long."
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        return "The user name must not contain control characters."
    if any(ord(ch) > _BMP_MAX for ch in name):
        return "The user name must not contain characters outside Unicode's BMP (such as emoji)."
    if name != name.strip():
        return "The user name must not begin or end with a space."
    if name.lower() in RESERVED_USER_NAMES:
        return f"The user name {name!r} is reserved."
    return None


def _valid_address_pattern(host: str) -> bool:
    address, _, netmask = host.partition("/")
    if netmask:
        try:
            ipaddress.IPv4Address(address)
            ipaddress.IPv4Address(netmask)
        except ValueError:
            return False
        return True
    if not _HOST_PATTERN.fullmatch(address):
        return False
    if "%" in address or "_" in address:
        return True  # a wildcard pattern such as 10.0.% or fe80::%
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def host_problem(host: str) -> str | None:
    if not host:
        return "The user host must not be empty; use '%' for any host."
    if len(host) > MAX_HOST:
        return f"The user host must be at most {MAX_HOST} characters long."
    if host in ("%", "localhost") or _valid_address_pattern(host):
        return None
    return (
        f"Invalid host {host!r}: use '%', 'localhost', an IP address, a pattern such as '10.0.%' or "
        "'address/netmask'. Host names never match: the server does not resolve names."
    )


def _validate_database(prefix: str, database: DatabaseSpec) -> None:
    problem = database_name_problem(database.name)
    if problem:
        raise BadRequest(problem, field=f"{prefix}.name")
    charset = normalise_charset(database.character_set) if database.character_set is not None else None
    if charset is not None and charset not in CHARACTER_SETS:
        raise BadRequest(
            f"Unknown MariaDB character set {database.character_set!r}; use one such as utf8mb4 or latin1.",
            field=f"{prefix}.character_set",
        )
    if database.collate is not None:
        collation = database.collate.strip().lower()
        owner = charset_of_collation(collation) if _COLLATION.fullmatch(collation) else None
        if owner is None:
            raise BadRequest(
                f"Unknown MariaDB collation {database.collate!r}; use one such as utf8mb4_unicode_ci.",
                field=f"{prefix}.collate",
            )
        if charset is not None and not _same_charset(owner, charset):
            raise BadRequest(
                f"Collation {database.collate!r} does not belong to character set {database.character_set!r}.",
                field=f"{prefix}.collate",
            )


def password_problem(password: str) -> str | None:
    """Why `password` cannot be an account's password; None when it is fine (never quotes the password)."""
    if not password:
        return "The user password must not be empty."
    if len(password) > MAX_PASSWORD:
        return f"The user password must be at most {MAX_PASSWORD} characters long."
    if "\0" in password:
        return "The user password must not contain NUL characters."
    return None


def _validate_user(prefix: str, user: UserSpec, database_names: set[str] | None) -> None:
    """`database_names` are the databases a user may name (a spec's); None: any valid name (accounts API)."""
    problem = user_name_problem(user.name)
    if problem:
        raise BadRequest(problem, field=f"{prefix}.name")
    problem = host_problem(user.host)
    if problem:
        raise BadRequest(problem, field=f"{prefix}.host")
    problem = password_problem(user.password.reveal())
    if problem:
        raise BadRequest(problem, field=f"{prefix}.password")
    check_user_databases(prefix, user, database_names, database_name_problem)


def validate_databases(databases: Sequence[DatabaseSpec], field: str = "databases") -> set[str]:
    """Raise `BadRequest` naming `field[i].<attribute>` for a database MariaDB could not create as asked.

    Returns the databases' names.
    """
    return check_databases(databases, field, _validate_database)


def _validate_accounts(users: Sequence[UserSpec], field: str, database_names: set[str] | None) -> None:
    accounts: set[tuple[str, str]] = set()
    for index, user in enumerate(users):
        _validate_user(f"{field}[{index}]", user, database_names)
        account = (user.name, user.host)
        if account in accounts:
            raise BadRequest(f"User {user.name!r}@{user.host!r} is listed twice.", field=f"{field}[{index}].name")
        accounts.add(account)


def validate_users(users: Sequence[UserSpec], field: str = "users") -> None:
    """Raise `BadRequest` naming `field[i].<attribute>` for a user the accounts API cannot create as asked.

    The rules of `validate_spec`; databases a user names must be valid names (whether they exist is the
    live instance's answer, not this pure check's).
    """
    _validate_accounts(users, field, None)


def validate_spec(spec: InstanceSpec) -> None:
    """Raise `BadRequest` naming the field for anything MariaDB could not honour as asked."""
    database_names = validate_databases(spec.databases, "instance.databases")
    _validate_accounts(spec.users, "instance.users", database_names)
