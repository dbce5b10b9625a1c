"""A replication set's OS group (`runtimes.local.peers`) is never deleted while a process carries it: its gid
could otherwise be handed to another set's group and that process would pass the other set's socket
directories. It is kept, and the runtime's upkeep removes it once no process carries it."""

from __future__ import annotations

import grp
import subprocess
import uuid

from local_runtime_support import Instances
from tests.support.server import wait_for

from reddwarf.runtimes.local import peers


def test_a_carried_group_is_kept_until_no_process_has_it_then_swept(instances: Instances) -> None:
    settings = instances.settings()
    set_id = str(uuid.uuid4())
    gid = peers.ensure_group(settings, set_id)
    assert peers.ensure_group(settings, set_id) == gid  # idempotent
    holder = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", f"--groups={gid}", "--", "sleep", "60"])
    try:
        wait_for(lambda: peers.gid_in_use(gid), 10, "the holder to carry the group")
        assert peers.remove_group(settings, set_id) is False  # carried: kept
        assert grp.getgrgid(gid).gr_name == peers.group_name(settings, set_id)
        assert peers.sweep_groups(settings, set()) == 0  # still carried
    finally:
        holder.kill()
        holder.wait()
    wait_for(lambda: not peers.gid_in_use(gid), 10, "no process to carry the group (zombies do not count)")
    # Its founder is still here: the sweep leaves it; gone, the sweep removes it.
    assert peers.sweep_groups(settings, {set_id.replace("-", "")[:12]}) == 0
    assert peers.sweep_groups(settings, set()) == 1
    assert peers.gid_of(peers.group_name(settings, set_id)) is None
