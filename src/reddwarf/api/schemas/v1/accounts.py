"""Request bodies of Trove's databases, users, grants and root routes (`trove/extensions/mysql`), in pydantic.

Structure and types only, as Trove's jsonschema: what a name or password may be is checked by
`services.accounts` and the engine's own rules, so that every caller gets the same answers. Lists that
Trove requires non-empty (`databases`, `users`) must have at least one item; nested objects tolerate keys
they do not name, as Trove's do; a user update refuses unknown attributes by name.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from reddwarf.api.schemas.v1.instances import MAX_DATABASES, MAX_USERS, DatabaseIn, DatabaseRef, UserIn
from reddwarf.domain.instance import DatabaseSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.services.accounts import ANY_HOST, UserUpdate


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class DatabasesCreateBody(_Lenient):
    """`POST /instances/{id}/databases`: `{"databases": [{"name", "character_set"?, "collate"?}]}`."""

    databases: list[DatabaseIn] = Field(min_length=1, max_length=MAX_DATABASES)

    def specs(self) -> list[DatabaseSpec]:
        return [DatabaseSpec(name=d.name, character_set=d.character_set, collate=d.collate) for d in self.databases]


class UsersCreateBody(_Lenient):
    """`POST /instances/{id}/users`: `{"users": [{"name", "password", "host"?, "databases"?: [{"name"}]}]}`."""

    users: list[UserIn] = Field(min_length=1, max_length=MAX_USERS)

    def specs(self) -> list[UserSpec]:
        return [
            UserSpec(
                name=u.name, password=Secret(u.password), host=u.host or ANY_HOST,
                databases=tuple(d.name for d in u.databases),
            )
            for u in self.users
        ]


class UserPasswordIn(_Lenient):
    name: str
    password: str
    host: str | None = None


class UsersPasswordBody(_Lenient):
    """`PUT /instances/{id}/users` (bulk password change): `{"users": [{"name", "password", "host"?}]}`."""

    users: list[UserPasswordIn] = Field(min_length=1, max_length=MAX_USERS)

    def specs(self) -> list[UserSpec]:
        return [UserSpec(name=u.name, password=Secret(u.password), host=u.host or ANY_HOST) for u in self.users]


class UserUpdateIn(BaseModel):
    """Trove's user attributes: any of `name`, `password`, `host`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = None
    password: str | None = None
    host: str | None = None


class UserUpdateBody(_Lenient):
    """`PUT /instances/{id}/users/{user}`: `{"user": {"name"?, "password"?, "host"?}}`."""

    user: UserUpdateIn

    def update(self) -> UserUpdate:
        user = self.user
        return UserUpdate(
            name=user.name,
            password=None if user.password is None else Secret(user.password),
            host=user.host,
        )


class GrantBody(_Lenient):
    """`PUT /instances/{id}/users/{user}/databases`: `{"databases": [{"name"}]}`."""

    databases: list[DatabaseRef] = Field(min_length=1, max_length=MAX_DATABASES)

    def names(self) -> list[str]:
        return [d.name for d in self.databases]


class RootEnableBody(_Lenient):
    """`POST /instances/{id}/root`: optional `{"password": "..."}` (without it, one is generated)."""

    password: str | None = None
