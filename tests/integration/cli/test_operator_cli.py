"""Operator commands: `reddwarf db upgrade`, `project create|list`, `token create|list|revoke`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reddwarf.cli.root import app
from reddwarf.domain.errors import Unauthorized
from reddwarf.identity.tokens import authenticate
from reddwarf.store.database import Database

runner = CliRunner()


@pytest.fixture(autouse=True)
def _keep_umask() -> Iterator[None]:
    """The operator commands set the control plane's umask (077) on the process that runs them: this one."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield
    os.umask(saved)


def invoke(state: Path, *args: str) -> str:
    result = runner.invoke(app, [*args, "--state-dir", str(state)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def open_store(state: Path) -> Database:
    control = state / "control"
    return Database.from_url(f"sqlite:///{control / 'reddwarf.db'}", key_file=control / "secret.key")


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    invoke(tmp_path, "db", "upgrade")
    invoke(tmp_path, "db", "upgrade")
    db = open_store(tmp_path)
    assert db.current_revision() == Database.head_revision()
    db.dispose()


def test_project_and_token_lifecycle(tmp_path: Path) -> None:
    project = json.loads(invoke(tmp_path, "project", "create", "acme", "--json"))
    assert project["name"] == "acme"
    listed = json.loads(invoke(tmp_path, "project", "list", "--json"))
    assert project["id"] in [p["id"] for p in listed]

    token = json.loads(invoke(tmp_path, "token", "create", "--project", "acme", "--role", "member", "--json"))
    assert token["project_id"] == project["id"]
    db = open_store(tmp_path)
    try:
        auth = authenticate(db, token["token"])
        assert auth.project_id == project["id"]
        assert not auth.is_admin
        tokens = invoke(tmp_path, "token", "list", "--json")
        assert token["token"] not in tokens, "token values are never listed"
        assert token["id"] in tokens
        invoke(tmp_path, "token", "revoke", token["id"])
        with pytest.raises(Unauthorized):
            authenticate(db, token["token"])
    finally:
        db.dispose()


def test_token_for_unknown_project_fails(tmp_path: Path) -> None:
    result = runner.invoke(app, ["token", "create", "--project", "nope", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "not found" in result.output


def test_duplicate_project_fails(tmp_path: Path) -> None:
    invoke(tmp_path, "project", "create", "acme")
    result = runner.invoke(app, ["project", "create", "acme", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "already exists" in result.output
