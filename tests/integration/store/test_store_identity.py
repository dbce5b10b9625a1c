"""Projects, tokens (stored as hashes only) and events."""

from __future__ import annotations

import hashlib
import secrets

import pytest
from sqlalchemy import create_engine, text

from reddwarf.domain.errors import Conflict, NotFound
from reddwarf.store import Database


def test_projects_are_found_by_id_or_name(db: Database) -> None:
    with db.unit_of_work() as uow:
        alpha = uow.identity.create_project("alpha")
        beta = uow.identity.create_project("beta", project_id="b" * 32)
        with pytest.raises(Conflict):
            uow.identity.create_project("alpha")
    with db.unit_of_work(write=False) as uow:
        assert len(alpha.id) == 32
        assert uow.identity.get_project(alpha.id) == alpha
        assert uow.identity.find_project("beta") == beta
        assert uow.identity.find_project("b" * 32) == beta
        assert uow.identity.find_project("gamma") is None
        assert [p.name for p in uow.identity.list_projects()] == ["alpha", "beta"]


def test_tokens_are_stored_hashed_and_can_be_revoked(db: Database, store_url: str) -> None:
    token = secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode()).hexdigest()
    with db.unit_of_work() as uow:
        project = uow.identity.create_project("alpha")
        record = uow.identity.create_token(
            project.id, digest, ("admin", "member"), expires_at=None, description="bootstrap"
        )
        with pytest.raises(ValueError, match="SHA-256"):
            uow.identity.create_token(project.id, token, ("member",), expires_at=None)
        with pytest.raises(NotFound):
            uow.identity.create_token("nope", "0" * 64, ("member",), expires_at=None)
    with db.unit_of_work() as uow:
        found = uow.identity.find_token(digest)
        assert found == record
        assert found is not None and found.roles == ("admin", "member") and not found.revoked
        assert uow.identity.find_token(hashlib.sha256(b"other").hexdigest()) is None
        assert uow.identity.revoke_token(record.id)
        assert not uow.identity.revoke_token("unknown")
    with db.unit_of_work(write=False) as uow:
        revoked = uow.identity.find_token(digest)
        assert revoked is not None and revoked.revoked
        assert [t.id for t in uow.identity.list_tokens(project.id)] == [record.id]
        assert uow.identity.list_tokens("other") == []

    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            rows = repr(list(connection.execute(text("SELECT * FROM tokens"))))
    finally:
        engine.dispose()
    assert digest in rows and token not in rows


def test_events_are_listed_newest_last(db: Database) -> None:
    with db.unit_of_work() as uow:
        for n in range(5):
            uow.events.add("i1", "status", f"event {n}")
        uow.events.add("i2", "status", "elsewhere")
    with db.unit_of_work(write=False) as uow:
        assert [e.message for e in uow.events.list("i1")] == [f"event {n}" for n in range(5)]
        assert [e.message for e in uow.events.list("i1", limit=2)] == ["event 3", "event 4"]
        assert uow.events.list("nobody") == []
