"""Settings of the local runtime (`REDDWARF_LOCAL_*`), validated once when the runtime is built.

Every field names its environment variable: `state_dir` is `REDDWARF_LOCAL_STATE_DIR`, and so on.
"""

from __future__ import annotations

import json
import re
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Toggle = Literal["auto", "true", "false"]

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
# The longest socket file name an engine puts in its socket dir (PostgreSQL's).
LONGEST_SOCKET_NAME = ".s.PGSQL.65535"
INSTANCE_KEY_LENGTH = 12
_USER_PREFIX = re.compile(r"^[a-z_][a-z0-9_-]{0,15}$")
_CGROUP_PARENT = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class LocalRuntimeSettings(BaseSettings):
    """Where the local runtime keeps instances, which addresses it hands out, and which isolation it uses."""

    model_config = SettingsConfigDict(env_prefix="REDDWARF_LOCAL_", extra="ignore")

    state_dir: Path = Path("/var/lib/reddwarf")
    socket_base: Path | None = None
    address_pool: IPv4Network = IPv4Network("127.0.1.0/24")
    routable_address: IPv4Address | None = None
    port_range: Annotated[tuple[int, int], NoDecode] = (20000, 20999)
    use_cgroups: Toggle = "auto"
    use_loop_volumes: Toggle = "auto"
    # Volume images on a copy-on-write pool (`pool`), the ground of snapshots and branches: wherever the
    # host can (auto); without it branches are made through a backup and a restore.
    use_cow_pool: Toggle = "auto"
    # A reflink-capable filesystem to keep the pool on, instead of an XFS image under the state directory.
    pool_dir: Path | None = None
    # Size of that XFS image, preallocated; 0: half the state directory's free space when it is made.
    pool_gb: int = Field(default=0, ge=0)
    # A volume image of more extents than this is re-based (defragmented online) between operations: a
    # snapshot's reflink takes ~35 us per extent (4,096: ~0.15 s).
    rebase_extents: int = Field(default=4096, ge=16)
    user_prefix: str = "rd-"
    cgroup_root: Path = Path("/sys/fs/cgroup")
    cgroup_parent: str = "reddwarf"
    command_path: str = "/usr/local/bin:/usr/bin:/bin"
    kill_timeout: float = Field(default=10.0, gt=0)
    # Processes and threads one instance may have at once (cgroup `pids.max`). PostgreSQL needs one process
    # per connection (up to 400 on the largest flavors) plus about a dozen; MariaDB a thread per connection.
    pids_max: int = Field(default=512, ge=16)

    @field_validator("state_dir", "cgroup_root")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @field_validator("socket_base", "pool_dir")
    @classmethod
    def _absolute_or_none(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @field_validator("port_range", mode="before")
    @classmethod
    def _parse_range(cls, value: object) -> object:
        """Accept `20000-20999` or JSON `[20000, 20999]` from the environment."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            low, _, high = value.partition("-")
            return (low.strip(), high.strip())
        return value

    @field_validator("user_prefix")
    @classmethod
    def _user_prefix(cls, value: str) -> str:
        if not _USER_PREFIX.match(value):
            raise ValueError("must be a short lowercase user-name prefix such as 'rd-'")
        return value

    @field_validator("cgroup_parent")
    @classmethod
    def _cgroup_parent(cls, value: str) -> str:
        if not _CGROUP_PARENT.match(value) or ".." in value.split("/"):
            raise ValueError("must be a relative cgroup path such as 'reddwarf'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LocalRuntimeSettings:
        low, high = self.port_range
        if not 1 <= low <= high <= 65535:
            raise ValueError("port_range must be two ports, low <= high, within 1-65535")
        longest = f"{self.effective_socket_base}/{'f' * INSTANCE_KEY_LENGTH}/{LONGEST_SOCKET_NAME}"
        if len(longest.encode()) > MAX_SOCKET_PATH:
            raise ValueError(
                f"socket_base {self.effective_socket_base} is too long: socket paths would be "
                f"{len(longest.encode())} bytes (max {MAX_SOCKET_PATH}); set REDDWARF_LOCAL_SOCKET_BASE"
            )
        return self

    @property
    def effective_socket_base(self) -> Path:
        """The directory holding each instance's socket dir (default: `<state_dir>/s`)."""
        return self.socket_base if self.socket_base is not None else self.state_dir / "s"
