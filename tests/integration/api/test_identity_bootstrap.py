"""First-start bootstrap: admin project and token file (0600), once; the token authenticates as admin."""

from __future__ import annotations

import stat
from pathlib import Path

from reddwarf.identity.bootstrap import ensure_bootstrap
from reddwarf.identity.tokens import authenticate
from reddwarf.settings import Settings
from reddwarf.store.database import Database


def _db(tmp_path: Path) -> Database:
    db = Database.from_url(f"sqlite:///{tmp_path / 'reddwarf.db'}", key_file=tmp_path / "secret.key")
    db.upgrade()
    return db


def test_first_start_creates_an_admin_token_file_and_later_starts_do_nothing(tmp_path: Path) -> None:
    db = _db(tmp_path)
    settings = Settings(state_dir=tmp_path / "state")

    first = ensure_bootstrap(db, settings)
    token = first.token_file.read_text().strip()
    second = ensure_bootstrap(db, settings)

    assert first.created and not second.created
    assert first.token_file == settings.state_dir / "control" / "admin-token"
    assert stat.S_IMODE(first.token_file.stat().st_mode) == 0o600
    assert second.project_id == first.project_id
    assert first.token_file.read_text().strip() == token
    auth = authenticate(db, token)
    assert auth.is_admin and auth.project_id == first.project_id
    with db.unit_of_work(write=False) as uow:
        assert len(uow.identity.list_tokens()) == 1
    db.dispose()


def test_bootstrap_uses_the_configured_project_and_token(tmp_path: Path) -> None:
    db = _db(tmp_path)
    settings = Settings(state_dir=tmp_path / "state", bootstrap_project="ops", bootstrap_token="tok-123456")

    result = ensure_bootstrap(db, settings)

    assert result.project_id == "ops"
    assert result.token_file.read_text().strip() == "tok-123456"
    assert authenticate(db, "tok-123456").project_id == "ops"
    assert b"tok-123456" not in (tmp_path / "reddwarf.db").read_bytes()
    db.dispose()
