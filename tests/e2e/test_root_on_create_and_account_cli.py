"""`root_on_create` (the create response carries the root password, once) and the account CLI commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from reddwarf.client import Instance
from tests.support.server import ACTIVE_TIMEOUT, DELETE_TIMEOUT, ReddwarfProcesses, running_plane, wait_for

REDDWARF = str(Path(sys.executable).with_name("reddwarf"))


@pytest.fixture(scope="module")
def root_plane() -> Iterator[ReddwarfProcesses]:
    with running_plane("e2e-root", "127.0.94.0/24", REDDWARF_ROOT_ON_CREATE="true") as procs:
        yield procs


def cli(plane: ReddwarfProcesses, *args: str, stdin: str | None = None) -> Any:
    env = {**os.environ, "REDDWARF_ENDPOINT": plane.url, "REDDWARF_TOKEN": plane.token,
           "REDDWARF_PROJECT": plane.project_id}
    result = subprocess.run([REDDWARF, *args, "--json"], input=stdin, capture_output=True, text=True, env=env,
                            timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def login(view: Instance, user: str, password: str, dbname: str = "postgres") -> bool:
    try:
        with psycopg.connect(host=view.address, port=view.port, user=user, password=password, dbname=dbname,
                             connect_timeout=5) as conn:
            conn.execute("select 1")
    except psycopg.OperationalError:
        return False
    return True


def test_root_on_create_and_account_cli(root_plane: ReddwarfProcesses) -> None:
    with root_plane.tenant() as client:
        created = client.create_instance("rooted", "1", 1, datastore="postgresql", version="15", databases=["app"])
        assert created.root_password is not None, "root_on_create returns the root password in the create response"
        password = created.root_password.reveal()
        view = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
        assert view.root_password is None, "the root password is shown once, never again"
        assert client.accounts.root_enabled(created.id) is True
        assert login(view, "root", password)

        cli(root_plane, "user", "create", created.id, "gina", "--database", "app", "--password-stdin",
            "--wait", stdin="gina's pw\n")
        users = cli(root_plane, "user", "list", created.id)
        assert "gina" in [u["name"] for u in users]
        assert login(view, "gina", "gina's pw", "app")
        cli(root_plane, "root", "disable", created.id)
        wait_for(lambda: not login(view, "root", password), 30, "root to be disabled")
        assert cli(root_plane, "root", "status", created.id)["rootEnabled"] is False
        client.delete_instance(created.id)
        client.wait_for_delete(created.id, timeout=DELETE_TIMEOUT)
