"""The `reddwarf` tenant CLI against a real server: create --wait, list, show, delete --wait."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from tests.support.server import ReddwarfProcesses

REDDWARF = str(Path(sys.executable).with_name("reddwarf"))


def cli(reddwarf: ReddwarfProcesses, *args: str, stdin: str | None = None) -> Any:
    env = {**os.environ, "REDDWARF_ENDPOINT": reddwarf.url, "REDDWARF_TOKEN": reddwarf.token,
           "REDDWARF_PROJECT": reddwarf.project_id}
    result = subprocess.run([REDDWARF, *args, "--json"], input=stdin, capture_output=True, text=True, env=env,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_tenant_cli_lifecycle(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    created = cli(reddwarf, "instance", "create", unique_name, "--flavor", "tiny", "--size", "1",
                  "--datastore", "postgresql", "--version", "15", "--database", "app",
                  "--user", "frank:app", "--password-stdin", "--wait", stdin="frank's password\n")
    assert created["status"] == "ACTIVE"
    assert unique_name in [i["name"] for i in cli(reddwarf, "instance", "list")]
    shown = cli(reddwarf, "instance", "show", created["id"])
    with psycopg.connect(host=shown["addresses"][0]["address"], port=shown["port"], user="frank",
                         password="frank's password", dbname="app", connect_timeout=5) as conn:
        assert conn.execute("select current_user").fetchone() == ("frank",)
    cli(reddwarf, "instance", "delete", created["id"], "--wait")
    assert created["id"] not in [i["id"] for i in cli(reddwarf, "instance", "list")]
