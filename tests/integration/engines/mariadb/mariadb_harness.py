"""Helpers of the MariaDB integration harness (see conftest.py): addresses, OS user, one running server.

Adapted from the PostgreSQL harness; it does what a runtime would, minimally: 0700 directories owned by an
unprivileged user under a 0755 scratch directory, the workload's files and init files written with their
modes, `init` and `server` run as that user in a session of their own (cwd and HOME the data dir, as the
local runtime does), secret init files removed after init, readiness polled through the engine's probe
with a deadline, and `stop_signal` sent to the process group at the end.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
from collections.abc import Iterator
from pathlib import Path

from tests.support.engine_harness import HarnessServer, OsUser
from tests.support.engine_harness import free_address as shared_free_address

from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.instance import InstanceSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement
from reddwarf.engines.mariadb import MariadbEngine

ADDRESS_POOL = ipaddress.ip_network("127.0.79.0/24")
PORT = 3306
READY_DEADLINE = 60.0
FLAVOR = Flavor(id="1", name="tiny", ram_mb=256, vcpus=1)
COMMAND_PATH = "/usr/local/bin:/usr/bin:/bin"


def free_address(port: int = PORT, exclude: frozenset[str] = frozenset()) -> str:
    return shared_free_address(str(ADDRESS_POOL), port, exclude)


class Server(HarnessServer):
    """One MariaDB server run by the harness: install-db output in init.log, mariadbd's in server.log."""

    engine: MariadbEngine
    init_log = "init.log"
    server_log = "server.log"
    poll_interval = 0.05

    @property
    def error_log(self) -> Path:
        return Path(self.placement.log_dir) / "error.log"

    @property
    def output_log(self) -> Path:
        return Path(self.placement.log_dir) / self.server_log

    def logs_text(self) -> str:
        return self.log_text()


def make_placement(root: Path, user: OsUser, address: str, name: str | None = None) -> Placement:
    base = root / (name or secrets.token_hex(3))
    return Placement(
        instance_id=base.name,
        os_user=user.name,
        address=address,
        port=PORT,
        data_dir=str(base / "volume" / "data"),
        config_dir=str(base / "config"),
        log_dir=str(base / "log"),
        run_dir=str(base / "run"),
        socket_dir=str(base / "s"), scratch_dir=str(base / "t"),
    )


@contextlib.contextmanager
def running_server(
    engine: MariadbEngine,
    version: DatastoreVersion,
    user: OsUser,
    root: Path,
    spec: InstanceSpec,
    flavor: Flavor = FLAVOR,
) -> Iterator[Server]:
    """Prepare, initialise and start one server; yield it once the admin probe answers; stop it at the end."""
    root.mkdir(mode=0o755, exist_ok=True)
    placement = make_placement(root, user, free_address())
    Path(placement.data_dir).parent.mkdir(mode=0o755, parents=True)  # the volume: root-owned, as the runtime's
    admin_password = Secret(secrets.token_urlsafe(24))
    workload = engine.workload(spec, version, flavor, placement, admin_password)
    server = Server(engine, placement, workload, admin_password, user)
    server.prepare()
    server.initialise()
    try:
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop()
