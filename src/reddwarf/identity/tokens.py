"""Built-in tokens: issue a random token (only its sha256 is stored) and authenticate one.

A token is `secrets.token_urlsafe(32)`; the store keeps `sha256(token).hexdigest()`, so a copy of the
metadata database never yields a usable token. `authenticate` answers 401 (`Unauthorized`) for a
missing, unknown, expired or revoked token, with the same message for each so that a caller learns
nothing about which tokens exist.
"""

from __future__ import annotations

import hashlib
import logging
import time

from reddwarf.domain.errors import NotFound, Unauthorized
from reddwarf.domain.secret import Secret, generate_secret
from reddwarf.identity.context import AuthContext
from reddwarf.store.database import Database
from reddwarf.store.records import TokenRecord
from reddwarf.store.uow import UnitOfWork

logger = logging.getLogger(__name__)

_UNAUTHORIZED = "The request you have made requires authentication."


def hash_token(token: str) -> str:
    """The form a token is stored and looked up in."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token_value() -> Secret:
    return generate_secret(32)


def issue_token_in(
    uow: UnitOfWork,
    project_id: str,
    roles: tuple[str, ...],
    ttl: float | None,
    description: str = "",
    *,
    value: Secret | None = None,
    now: float | None = None,
) -> tuple[TokenRecord, Secret]:
    """Issue a token inside an open unit of work; `ttl` in seconds, None for a token that never expires."""
    if uow.identity.get_project(project_id) is None:
        raise NotFound("Project", project_id)
    plaintext = value if value is not None else new_token_value()
    issued_at = time.time() if now is None else now
    expires_at = None if ttl is None else issued_at + ttl
    record = uow.identity.create_token(
        project_id, hash_token(plaintext.reveal()), roles, expires_at=expires_at, description=description
    )
    logger.info("issued token %s for project %s with roles %s", record.id, project_id, ",".join(roles))
    return record, plaintext


def issue_token(
    db: Database, project_id: str, roles: tuple[str, ...], ttl: float | None, description: str = ""
) -> tuple[TokenRecord, Secret]:
    """Issue a token in its own unit of work. The plaintext is returned once and never stored."""
    with db.unit_of_work() as uow:
        return issue_token_in(uow, project_id, roles, ttl, description)


def authenticate(db: Database, token: str | None, *, now: float | None = None) -> AuthContext:
    """Resolve an `X-Auth-Token` value to the caller, or raise `Unauthorized`."""
    if not token:
        raise Unauthorized(_UNAUTHORIZED)
    with db.unit_of_work(write=False) as uow:
        record = uow.identity.find_token(hash_token(token))
    if record is None:
        raise Unauthorized(_UNAUTHORIZED)
    current = time.time() if now is None else now
    if record.revoked:
        logger.info("refused revoked token %s", record.id)
        raise Unauthorized(_UNAUTHORIZED)
    if record.expires_at is not None and record.expires_at <= current:
        logger.info("refused expired token %s", record.id)
        raise Unauthorized(_UNAUTHORIZED)
    return AuthContext.for_roles(record.project_id, tuple(record.roles), token_id=record.id)
