"""The README's "Using it" walk-through, run as written against a real server, down to its `psql` step, and
its "Backups and restores" block.

The commands are read from README.md itself (the first bash block of "## Using it"), so the documentation and
this test cannot drift apart. Only what the README leaves to the reader is filled in: `.venv/bin/reddwarf` is
this interpreter's `reddwarf`, `<id>` the created instance's id, `<address from show>` the address that
`instance show` printed; the CLI finds the server's admin token and project in its state directory, as the
README says. The password prompt is answered on stdin (the CLI runs without a terminal), and psql reads the
password from a 0600 password file, never from its command line.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import REDDWARF, ReddwarfProcesses, running_plane

README = Path(__file__).resolve().parents[2] / "README.md"
PASSWORD = "alice's walk-through password"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def reddwarf() -> Iterator[ReddwarfProcesses]:
    with running_plane("readme", "127.0.96.0/24") as procs:
        yield procs


def readme_commands(heading: str = "## Using it") -> list[list[str]]:
    """The shell commands of the first bash block under `heading` in the README, continuation lines joined."""
    section = README.read_text(encoding="utf-8").split(f"\n{heading}\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    return [words for words in (shlex.split(line, comments=True) for line in lines) if words]


def test_the_readme_commands_work_as_written(reddwarf: ReddwarfProcesses, tmp_path: Path) -> None:
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    assert Path(psql).exists(), "psql (Debian's postgresql-client) is needed by the README's walk-through"
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:alice:{PASSWORD.replace(':', chr(92) + ':')}\n")
    passfile.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in ("REDDWARF_TOKEN", "REDDWARF_PROJECT", "PGPASSWORD")}
    env.update(REDDWARF_ENDPOINT=reddwarf.url, REDDWARF_STATE_DIR=str(reddwarf.state_dir), PGPASSFILE=str(passfile),
               PGCONNECT_TIMEOUT="10", COLUMNS="200")

    commands = readme_commands()
    programs = [words[0] for words in commands]
    assert programs.count(".venv/bin/reddwarf") >= 5 and "psql" in programs, commands
    instance_id = address = None
    for words in commands:
        argv = [REDDWARF if w == ".venv/bin/reddwarf" else psql if w == "psql" else w for w in words]
        stdin = None
        if instance_id is not None:
            argv = [w.replace("<id>", instance_id) for w in argv]
        if address is not None:
            argv = [w.replace("<address from show>", address) for w in argv]
        if words[:3] == [".venv/bin/reddwarf", "instance", "create"]:
            stdin = f"{PASSWORD}\n{PASSWORD}\n"  # the hidden prompt and its confirmation
        if words[0] == "psql":
            stdin = "SELECT current_user, current_database();\n"
        assert not any("<" in w for w in argv), f"a placeholder the walk-through did not fill: {argv}"
        # A new session: no controlling terminal, so the password prompt reads stdin as a pipe would give it.
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, timeout=600,
                                start_new_session=True, check=False)
        assert result.returncode == 0, f"{shlex.join(words)} failed:\n{result.stdout}\n{result.stderr}"
        if words[:3] == [".venv/bin/reddwarf", "instance", "create"]:
            found = UUID.search(result.stdout)
            assert found, result.stdout
            instance_id = found.group(0)
            assert "ACTIVE" in result.stdout
        if words[:3] == [".venv/bin/reddwarf", "instance", "show"]:
            shown = json.loads(result.stdout)
            address = shown["addresses"][0]["address"]
            assert shown["port"] == 5432  # the README's psql line names the standard port
        if words[0] == "psql":
            assert re.search(r"\balice\s*\|\s*app\b", result.stdout), result.stdout + result.stderr
    assert instance_id is not None and address is not None
    listed = json.loads(subprocess.run([REDDWARF, "instance", "list", "--json"], capture_output=True, text=True,
                                       env=env, timeout=60, check=True).stdout)
    assert instance_id not in [item["id"] for item in listed]


# Instances the backups block creates, by name, and the placeholder that stands for each one's id.
BACKUP_BLOCK_INSTANCES = {"db2": "<id>", "db2-copy": "<copy-id>"}


def test_the_readme_backup_commands_work_as_written(reddwarf: ReddwarfProcesses) -> None:
    """`<id>`/`<copy-id>` are the ids `instance create` printed, `<NAME-id>` the id `backup create NAME`
    printed (the first id each table shows)."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDDWARF_TOKEN", "REDDWARF_PROJECT")}
    env.update(REDDWARF_ENDPOINT=reddwarf.url, REDDWARF_STATE_DIR=str(reddwarf.state_dir), COLUMNS="200")
    commands = readme_commands("### Backups and restores")
    assert [w[1:3] for w in commands if w[0] == ".venv/bin/reddwarf"].count(["backup", "create"]) >= 2, commands
    ids: dict[str, str] = {}
    for words in commands:
        assert words[0] == ".venv/bin/reddwarf", words
        argv = [REDDWARF, *words[1:]]
        for placeholder, value in ids.items():
            argv = [w.replace(placeholder, value) for w in argv]
        assert not any("<" in w for w in argv), f"a placeholder the block did not fill: {argv}"
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, start_new_session=True,
                                check=False)
        assert result.returncode == 0, f"{shlex.join(words)} failed:\n{result.stdout}\n{result.stderr}"
        if words[1:3] in (["instance", "create"], ["backup", "create"]):
            found = UUID.search(result.stdout)
            assert found, result.stdout
            name = words[3]
            ids[BACKUP_BLOCK_INSTANCES[name] if words[1] == "instance" else f"<{name}-id>"] = found.group(0)
            assert ("ACTIVE" if words[1] == "instance" else "COMPLETED") in result.stdout, result.stdout
    assert {"<id>", "<copy-id>", "<nightly-id>", "<hourly-id>"} <= ids.keys()
    listed = json.loads(subprocess.run([REDDWARF, "backup", "list", "--json"], capture_output=True, text=True,
                                       env=env, timeout=60, check=True).stdout)
    # Deleting nightly deleted hourly, its incremental, first.
    assert {ids["<nightly-id>"], ids["<hourly-id>"]}.isdisjoint(item["id"] for item in listed)
