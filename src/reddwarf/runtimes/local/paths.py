"""Pure layout of one instance on this host: its key, OS user name, directories and private files.

Nothing here touches the file system. The layout under the state dir is::

    <state_dir>/                    0755 root
      instances/                    0755 root
        <instance id>/              0755 root
          private/                  0700 root   pidfile, init marker, resources, volume image
          volume/                   mount point of the instance's ext4 image (or a plain dir), 0755 root
            data/                   0700 user   data_dir
            tmp/                    0700 user   TMPDIR of every command: temp files count against the volume
            log/                    0700 user   the server's and init's output, and the engine's own logs:
                                                what a tenant makes its server log counts against its volume
          config/ run/              0700 user
    <socket_base>/<key>/            0700 user   socket_dir (short: unix socket paths max 107 bytes)

Parents are root-owned, so a tenant who controls the instance user can change what is inside its
0700 directories but never swap one of those directories for a symlink.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from reddwarf.domain.workload import Placement
from reddwarf.runtimes.local.settings import INSTANCE_KEY_LENGTH, LocalRuntimeSettings

_INSTANCE_ID = re.compile(r"^[0-9a-fA-F][0-9a-fA-F-]{11,63}$")


def instance_key(instance_id: str) -> str:
    """The first 12 hex digits of an instance id (a UUID): short, unique enough, safe in names and paths."""
    if not _INSTANCE_ID.match(instance_id):
        raise ValueError(f"instance id {instance_id!r} is not a hex id such as a UUID")
    digits = instance_id.replace("-", "").lower()
    if len(digits) < INSTANCE_KEY_LENGTH:
        raise ValueError(f"instance id {instance_id!r} has fewer than {INSTANCE_KEY_LENGTH} hex digits")
    return digits[:INSTANCE_KEY_LENGTH]


@dataclass(frozen=True, slots=True)
class InstanceLayout:
    """Every path the local runtime uses for one instance."""

    instance_id: str
    key: str
    os_user: str
    instance_dir: Path
    private_dir: Path
    volume_dir: Path
    data_dir: Path
    tmp_dir: Path
    config_dir: Path
    log_dir: Path
    run_dir: Path
    socket_dir: Path

    @property
    def pidfile(self) -> Path:
        return self.private_dir / "server.json"

    @property
    def init_marker(self) -> Path:
        return self.private_dir / "initialised"

    @property
    def resources_file(self) -> Path:
        return self.private_dir / "resources.json"

    @property
    def volume_image(self) -> Path:
        return self.private_dir / "volume.img"

    @property
    def server_log(self) -> Path:
        return self.log_dir / "server.log"

    @property
    def init_log(self) -> Path:
        return self.log_dir / "init.log"

    @property
    def user_dirs(self) -> tuple[Path, ...]:
        """The directories owned by the instance user (0700), in creation order."""
        return (self.data_dir, self.tmp_dir, self.config_dir, self.log_dir, self.run_dir, self.socket_dir)

    def placement(self, address: str, port: int) -> Placement:
        return Placement(
            instance_id=self.instance_id,
            os_user=self.os_user,
            address=address,
            port=port,
            data_dir=str(self.data_dir),
            config_dir=str(self.config_dir),
            log_dir=str(self.log_dir),
            run_dir=str(self.run_dir),
            socket_dir=str(self.socket_dir),
            scratch_dir=str(self.tmp_dir),
        )


def layout(settings: LocalRuntimeSettings, instance_id: str) -> InstanceLayout:
    """Derive the layout of `instance_id` from the settings alone."""
    key = instance_key(instance_id)
    instance_dir = instances_dir(settings) / instance_id.lower()
    volume_dir = instance_dir / "volume"
    return InstanceLayout(
        instance_id=instance_id,
        key=key,
        os_user=settings.user_prefix + key,
        instance_dir=instance_dir,
        private_dir=instance_dir / "private",
        volume_dir=volume_dir,
        data_dir=volume_dir / "data",
        tmp_dir=volume_dir / "tmp",
        config_dir=instance_dir / "config",
        log_dir=volume_dir / "log",
        run_dir=instance_dir / "run",
        socket_dir=settings.effective_socket_base / key,
    )


def instances_dir(settings: LocalRuntimeSettings) -> Path:
    return settings.state_dir / "instances"
