"""An installation whose control-plane files sit directly in the state dir (before the 0700 control dir)
has them moved into `<state>/control` at start, once, with its data intact and a log line per file."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from reddwarf import wiring
from reddwarf.settings import Settings
from reddwarf.store.database import Database

OLD_FILES = ("reddwarf.db", "secret.key", "admin-token", "admin-project")


def _old_installation(state: Path) -> str:
    """A state dir as an earlier version left it: a store with one project, key, token and project files."""
    state.mkdir(mode=0o755)
    db = Database.from_url(f"sqlite:///{state / 'reddwarf.db'}", key_file=state / "secret.key")
    db.upgrade()
    with db.unit_of_work() as uow:
        project_id = uow.identity.create_project("acme").id
    db.dispose()
    (state / "reddwarf.db").chmod(0o644)
    (state / "admin-token").write_text("tok\n")
    (state / "admin-project").write_text(project_id + "\n")
    return project_id


def test_files_at_the_old_paths_are_moved_into_the_control_dir_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    project_id = _old_installation(state)
    settings = Settings(state_dir=state)

    with caplog.at_level(logging.WARNING, logger="reddwarf.wiring"):
        db = wiring.open_database(settings)
    control = state / "control"
    assert stat.S_IMODE(control.stat().st_mode) == 0o700
    for name in OLD_FILES:
        assert not (state / name).exists()
        assert stat.S_IMODE((control / name).stat().st_mode) == 0o600
        assert any(str(control / name) in record.getMessage() for record in caplog.records)
    with db.unit_of_work(write=False) as uow:
        assert [p.id for p in uow.identity.list_projects()] == [project_id]
    db.dispose()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="reddwarf.wiring"):
        wiring.open_database(settings).dispose()  # idempotent: nothing left to move, nothing said
    assert caplog.records == []


def test_a_configured_store_url_is_left_where_it_is(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _old_installation(state)
    settings = Settings(state_dir=state, database_url=f"sqlite:///{state / 'reddwarf.db'}")
    wiring.open_database(settings).dispose()
    assert (state / "reddwarf.db").is_file()
    assert not (state / "control" / "reddwarf.db").exists()
    assert (state / "control" / "secret.key").is_file()


def test_a_file_at_both_paths_refuses_the_start_and_moves_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _old_installation(state)
    (state / "control").mkdir(mode=0o700)
    (state / "control" / "admin-token").write_text("newer\n")
    with pytest.raises(wiring.StartupRefused, match="admin-token"):
        wiring.open_database(Settings(state_dir=state))
    assert (state / "admin-token").read_text() == "tok\n"
    assert (state / "control" / "admin-token").read_text() == "newer\n"


def test_a_new_store_is_private_from_its_first_byte(tmp_path: Path) -> None:
    saved = os.umask(0o022)  # the most permissive umask a caller may have
    try:
        db = wiring.open_database(Settings(state_dir=tmp_path / "state"))
        db.upgrade()
        db.dispose()
    finally:
        os.umask(saved)
    control = tmp_path / "state" / "control"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in control.iterdir()}
    assert modes and set(modes.values()) == {0o600}, modes
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o755
