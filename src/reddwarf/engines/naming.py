"""Validation rules every engine with databases shares: pure, raising `BadRequest` naming the field.

Each engine keeps its own naming rules (what a valid name is) and passes them in; the bookkeeping around
them -- a database listed twice, a user naming a database twice or one the instance does not have -- is
the same everywhere and lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reddwarf.domain.errors import BadRequest
from reddwarf.domain.instance import DatabaseSpec, UserSpec


def check_user_databases(
    prefix: str, user: UserSpec, database_names: set[str] | None, name_problem: Callable[[str], str | None]
) -> None:
    """The databases a user is granted: valid names (when the instance's databases are not known) or
    among `database_names`, and none named twice."""
    seen: set[str] = set()
    for name in user.databases:
        if database_names is None:
            problem = name_problem(name)
            if problem:
                raise BadRequest(
                    f"User {user.name!r} names an invalid database: {problem}", field=f"{prefix}.databases"
                )
        elif name not in database_names:
            raise BadRequest(
                f"User {user.name!r} names database {name!r}, which is not among the instance's databases.",
                field=f"{prefix}.databases",
            )
        if name in seen:
            raise BadRequest(f"User {user.name!r} names database {name!r} twice.", field=f"{prefix}.databases")
        seen.add(name)


def check_databases(
    databases: Sequence[DatabaseSpec], field: str, validate_one: Callable[[str, DatabaseSpec], None]
) -> set[str]:
    """Each database valid by the engine's `validate_one(prefix, database)`, none listed twice; returns
    the names."""
    database_names: set[str] = set()
    for index, database in enumerate(databases):
        validate_one(f"{field}[{index}]", database)
        if database.name in database_names:
            raise BadRequest(f"Database {database.name!r} is listed twice.", field=f"{field}[{index}].name")
        database_names.add(database.name)
    return database_names
