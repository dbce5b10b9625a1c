"""Settings of the PostgreSQL engine (`REDDWARF_POSTGRESQL_*`), validated when the engine is built."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, IPvAnyNetwork, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ENGINES_DIR = Path("/opt/reddwarf/engines")
DEFAULT_DEBIAN_ROOT = Path("/usr/lib/postgresql")


class PostgresqlSettings(BaseSettings):
    """Where PostgreSQL software lives and which client networks every instance admits.

    - `engines_dir`: root of software installed by `reddwarf engines install`; PostgreSQL majors live
      under `<engines_dir>/postgresql/<major>/bin` (REDDWARF_POSTGRESQL_ENGINES_DIR).
    - `debian_root`: where Debian packages put server binaries, `<debian_root>/<major>/bin`
      (REDDWARF_POSTGRESQL_DEBIAN_ROOT).
    - `allowed_networks`: client networks (CIDRs) admitted by pg_hba besides loopback and the instance's own
      address, e.g. `REDDWARF_POSTGRESQL_ALLOWED_NETWORKS='["10.0.0.0/8"]'`. Password auth is always
      required.
    - `accounts_timeout`: seconds a live accounts call (list users, create a database, ...) may take to
      connect and per statement; writes get at least 30 s (REDDWARF_POSTGRESQL_ACCOUNTS_TIMEOUT).
    - `root_superuser`: give the tenant's `root` a real SUPERUSER (REDDWARF_POSTGRESQL_ROOT_SUPERUSER, default
      false). A superuser is a shell as the instance's OS user (`COPY ... TO PROGRAM`): turn this on only
      where the runtime isolates each instance like a VM (its own kernel, no neighbour's files or control
      plane to reach). Off, root is the managed-service root of docs/root-privileges.md.
    """

    model_config = SettingsConfigDict(env_prefix="REDDWARF_POSTGRESQL_", extra="ignore")

    engines_dir: Path = DEFAULT_ENGINES_DIR
    debian_root: Path = DEFAULT_DEBIAN_ROOT
    allowed_networks: list[IPvAnyNetwork] = Field(default_factory=list)
    version_probe_timeout: float = Field(default=10.0, gt=0)
    accounts_timeout: float = Field(default=5.0, gt=0)
    root_superuser: bool = False

    @field_validator("engines_dir", "debian_root")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError(f"must be an absolute path, got {value}")
        return value
