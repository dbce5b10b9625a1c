"""The filesystem target on a real directory: private modes, temporaries beside the object, fsync-and-rename
commits, a stale writer that cannot commit, and no symlink followed."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.support.server import wait_for

from reddwarf.domain.errors import PermanentError
from reddwarf.storage.base import ArtifactMissing
from reddwarf.storage.filesystem import FilesystemStorage
from reddwarf.storage.naming import TEMPORARY_MARK


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_directories_are_0700_and_files_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        storage = FilesystemStorage(tmp_path / "control" / "backups")
        storage.put("project/b1/artifact", b"x")
    finally:
        os.umask(old)
    root = tmp_path / "control" / "backups"
    assert mode(root) == mode(root / "project") == mode(root / "project" / "b1") == 0o700
    assert mode(root / "project" / "b1" / "artifact") == 0o600


def test_a_write_goes_to_a_temporary_beside_the_object(tmp_path: Path) -> None:
    storage = FilesystemStorage(tmp_path)
    writer = storage.open_write("project/b1/artifact")
    writer.write(b"data")
    (temporary,) = (tmp_path / "project" / "b1").iterdir()
    assert temporary.name.startswith(TEMPORARY_MARK) and temporary.name.endswith("-artifact")
    assert mode(temporary) == 0o600
    assert storage.keys("") == []
    writer.commit()
    assert [p.name for p in (tmp_path / "project" / "b1").iterdir()] == ["artifact"]
    with pytest.raises(ValueError, match="after commit"):
        writer.write(b"more")


def test_a_killed_writer_leaves_only_a_temporary_that_delete_prefix_removes(tmp_path: Path) -> None:
    """A real process killed in the middle of a write: what it leaves is invisible, and removed with its prefix."""
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from reddwarf.storage.filesystem import FilesystemStorage
        writer = FilesystemStorage(Path({str(tmp_path)!r})).open_write("project/b1/artifact")
        writer.write(b"x" * 100000)
        print("written", flush=True)
        sys.stdin.read()
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"written\n"
        child.send_signal(signal.SIGKILL)
        wait_for(lambda: child.poll() is not None, 10, "the writer to die")
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        if child.stdin is not None:
            child.stdin.close()
        if child.stdout is not None:
            child.stdout.close()
    storage = FilesystemStorage(tmp_path)
    assert storage.keys("") == []
    with pytest.raises(ArtifactMissing):
        storage.get("project/b1/artifact")
    assert len(list((tmp_path / "project" / "b1").iterdir())) == 1
    assert storage.delete_prefix("project/b1/") == 1
    assert not (tmp_path / "project" / "b1").exists()


def test_a_stale_writer_cannot_commit_after_delete_prefix(tmp_path: Path) -> None:
    storage = FilesystemStorage(tmp_path)
    stale = storage.open_write("project/b1/artifact")
    stale.write(b"old attempt")
    storage.delete_prefix("project/b1/")
    with pytest.raises(PermanentError, match="committing"):
        stale.commit()
    assert storage.keys("") == []


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not a backup")
    root = tmp_path / "backups"
    root.mkdir()
    (root / "project").symlink_to(outside)
    storage = FilesystemStorage(root)
    with pytest.raises(PermanentError, match="is not a directory"):
        storage.put("project/b1", b"x")
    (root / "object").symlink_to(outside / "secret")
    with pytest.raises(PermanentError, match="cannot be read"):
        storage.get("object")
    assert storage.delete_prefix("project/") == 0
    assert (outside / "secret").read_text() == "not a backup"


def test_a_relative_root_is_refused() -> None:
    with pytest.raises(ValueError, match="absolute"):
        FilesystemStorage(Path("relative/backups"))


def test_location_is_a_file_uri(tmp_path: Path) -> None:
    assert FilesystemStorage(tmp_path).location("project/b 1/artifact") == (tmp_path / "project/b 1/artifact").as_uri()
