"""Existing Trove clients work unchanged: python-troveclient and the OpenStack CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from keystoneauth1 import session
from keystoneauth1.token_endpoint import Token
from troveclient import client as trove_client

from tests.support.server import ReddwarfProcesses, wait_for

OPENSTACK = str(Path(sys.executable).with_name("openstack"))


def trove(reddwarf: ReddwarfProcesses) -> Any:
    return trove_client.Client("1.0", session=session.Session(auth=Token(reddwarf.endpoint, reddwarf.token)))


def test_troveclient_catalogue(reddwarf: ReddwarfProcesses) -> None:
    tc = trove(reddwarf)
    names = [d.name for d in tc.datastores.list()]
    assert "postgresql" in names
    versions = [v.name for v in tc.datastore_versions.list("postgresql")]
    assert "15" in versions
    flavors = {f.id: f for f in tc.flavors.list()}
    assert flavors["1"].ram > 0


def test_troveclient_instance_lifecycle(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    tc = trove(reddwarf)
    created = tc.instances.create(unique_name, flavor_id="1", volume={"size": 1},
                                  datastore="postgresql", datastore_version="15")
    assert created.status == "BUILD"
    assert unique_name in [i.name for i in tc.instances.list()]
    wait_for(lambda: tc.instances.get(created.id).status == "ACTIVE", 120, "troveclient to see ACTIVE")
    shown = tc.instances.get(created.id)
    assert shown.datastore["version"] == "15"
    tc.instances.delete(created.id)
    wait_for(lambda: created.id not in [i.id for i in tc.instances.list()], 60, "the instance to go away")


def openstack(reddwarf: ReddwarfProcesses, *args: str, output: bool = True) -> Any:
    """`openstack database ...` (or `openstack datastore ...`, where troveclient's OSC plugin puts it); its
    JSON output, or (`output` False: a command that prints nothing, such as a delete) None."""
    prefix = [] if args[0] == "datastore" else ["database"]
    command = [OPENSTACK, "--os-auth-type", "admin_token", "--os-endpoint", reddwarf.endpoint, *prefix, *args,
               *(("-f", "json") if output else ())]
    env = {**os.environ, "OS_TOKEN": reddwarf.token}  # as the README shows: never a token on a command line
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if output and result.stdout.strip() else None


def test_openstack_cli(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    datastores = openstack(reddwarf, "datastore", "list")
    assert "postgresql" in [d["Name"] for d in datastores]
    flavors = openstack(reddwarf, "flavor", "list")
    assert "1" in [str(f["ID"]) for f in flavors]
    created = openstack(reddwarf, "instance", "create", unique_name, "--flavor", "1", "--size", "1",
                        "--datastore", "postgresql", "--datastore-version", "15")
    instance_id = created["id"]
    assert unique_name in [i["Name"] for i in openstack(reddwarf, "instance", "list")]
    wait_for(lambda: openstack(reddwarf, "instance", "show", instance_id)["status"] == "ACTIVE", 120,
             "the OpenStack CLI to see ACTIVE")
    command = [
        OPENSTACK, "--os-auth-type", "admin_token", "--os-endpoint", reddwarf.endpoint,
        f"--os-token={reddwarf.token}", "database", "instance", "delete", instance_id,
    ]
    assert subprocess.run(command, capture_output=True, timeout=120, check=False).returncode == 0
    wait_for(lambda: instance_id not in [i["ID"] for i in openstack(reddwarf, "instance", "list")], 60,
             "the instance to go away")


def test_troveclient_and_the_openstack_cli_back_up_and_restore(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    tc = trove(reddwarf)
    source = tc.instances.create(unique_name, flavor_id="1", volume={"size": 1},
                                 datastore="postgresql", datastore_version="15")
    wait_for(lambda: tc.instances.get(source.id).status == "ACTIVE", 120, "the source to be ACTIVE")
    backup = tc.backups.create(f"{unique_name}-b", source.id, description="troveclient")
    assert backup.status == "NEW" and backup.instance_id == source.id
    wait_for(lambda: tc.backups.get(backup.id).status == "COMPLETED", 180, "the backup to complete")
    shown = tc.backups.get(backup.id)
    assert shown.size > 0 and shown.datastore["type"] == "postgresql" and shown.locationRef
    assert backup.id in [b.id for b in tc.backups.list()]
    assert [b.id for b in tc.instances.backups(source.id)] == [backup.id]
    # The OpenStack CLI sees the same backups (and takes one of its own, deleted at once).
    assert openstack(reddwarf, "backup", "show", backup.id)["status"] == "COMPLETED"
    assert backup.id in [b["ID"] for b in openstack(reddwarf, "backup", "list")]
    second = openstack(reddwarf, "backup", "create", f"{unique_name}-osc", "--instance", source.id)["id"]
    wait_for(lambda: openstack(reddwarf, "backup", "show", second)["status"] == "COMPLETED", 180,
             "the OpenStack CLI's backup to complete")
    openstack(reddwarf, "backup", "delete", second, output=False)
    wait_for(lambda: second not in [b["ID"] for b in openstack(reddwarf, "backup", "list")], 60,
             "the OpenStack CLI's backup to go away")
    copy = tc.instances.create(f"{unique_name}-copy", flavor_id="1", volume={"size": 1},
                               restorePoint={"backupRef": backup.id})
    wait_for(lambda: tc.instances.get(copy.id).status == "ACTIVE", 120, "the restore to be ACTIVE")
    for instance_id in (source.id, copy.id):
        tc.instances.delete(instance_id)
    tc.backups.delete(backup.id)
    wait_for(lambda: backup.id not in [b.id for b in tc.backups.list()], 60, "the backup to go away")
    wait_for(lambda: not {source.id, copy.id} & {i.id for i in tc.instances.list()}, 60, "the instances to go")
