"""Typed settings of the control plane (pydantic-settings, `REDDWARF_` prefix), loaded once at the entry point.

Plugins own their settings models (e.g. the local runtime's `REDDWARF_LOCAL_*`); `reddwarf.wiring`
loads them. Nothing reads the environment anywhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reddwarf.domain.pool import PoolTarget


class FlavorSetting(BaseModel):
    id: str
    name: str
    ram_mb: int = Field(gt=0)
    vcpus: int = Field(gt=0)


# The control plane's own directory inside the state dir, and the default SQLite store in it.
CONTROL_DIR_NAME = "control"
DATABASE_FILE_NAME = "reddwarf.db"

DEFAULT_FLAVORS: tuple[FlavorSetting, ...] = (
    FlavorSetting(id="1", name="tiny", ram_mb=256, vcpus=1),
    FlavorSetting(id="2", name="small", ram_mb=1024, vcpus=1),
    FlavorSetting(id="3", name="medium", ram_mb=2048, vcpus=2),
    FlavorSetting(id="4", name="large", ram_mb=4096, vcpus=2),
)


class Settings(BaseSettings):
    """Everything the control plane itself needs; each field names its environment variable."""

    model_config = SettingsConfigDict(env_prefix="REDDWARF_", extra="ignore")

    state_dir: Path = Path("/var/lib/reddwarf")
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8779
    public_url: str | None = None
    # The largest request body the API reads (REDDWARF_MAX_REQUEST_BODY_BYTES); a larger one answers 413.
    max_request_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    identity: Literal["builtin", "keystone", "noauth"] = "builtin"
    bootstrap_project: str | None = None
    bootstrap_token: str | None = None
    token_ttl_hours: float = 24.0 * 365

    runtime: Literal["local"] = "local"
    embedded_workers: int = Field(default=1, ge=0)
    lease_ttl: float = Field(default=30.0, gt=0)
    worker_poll_interval: float = Field(default=0.2, gt=0)
    # Seconds between two health rounds. A server's death is seen at once (the runtime watches it: pidfd);
    # a server stopped by a signal (state T in /proc) within this, plus a store write.
    health_interval: float = Field(default=1.0, gt=0)
    # Seconds between two login-free pings of an instance's endpoint: a server that runs but answers nothing
    # is seen within this plus the ping's timeout (2 s) plus `health_interval`.
    health_ping_interval: float = Field(default=5.0, gt=0)
    # Instances checked at once by the health observer: a hung server holds one of them until its probe times out.
    health_concurrency: int = Field(default=8, gt=0)
    # The operator's cap on every operation's deadline (each kind has its own, `domain/operations.py`).
    operation_deadline: float = Field(default=6 * 3600.0, gt=0)
    # Seconds between two looks for log files servers archived (PostgreSQL's WAL), shipped to backup storage.
    archive_ship_interval: float = Field(default=5.0, gt=0)
    # Seconds between two looks at every replica's streaming state and lag (docs/replication.md).
    replication_check_interval: float = Field(default=5.0, gt=0)
    # Seconds a replication source must have been unhealthy (its server down, or not answering) before it may
    # be ejected (a failover; Trove's `agent_heartbeat_expiry`, 90 s).
    eject_after: float = Field(default=90.0, ge=0)
    # Automatic failover (docs/failover.md): the RTO budget is `failover_check_interval` + the ping's timeout
    # (detection), `failover_grace` (a primary must fail every look for that long), then the failover itself.
    # Seconds between two looks at the primary of every set that fails over by itself.
    failover_check_interval: float = Field(default=0.25, gt=0)
    # Seconds a primary's login-free ping may take before the look counts it as not answering.
    failover_ping_timeout: float = Field(default=0.5, gt=0)
    # Seconds a primary must have been dead or hung, on every look, before its set fails over.
    failover_grace: float = Field(default=2.0, ge=0)
    # Seconds after an automatic failover during which its set does not fail over by itself again (no flapping).
    failover_quiet: float = Field(default=300.0, ge=0)
    # Synchronous mode (docs/failover.md): seconds between two checks of a synchronous set's primary, and how
    # long a set of durability "available" lets its commits wait for a replica before it drops to asynchronous.
    sync_check_interval: float = Field(default=1.0, gt=0)
    sync_fallback_after: float = Field(default=2.0, ge=0)
    # How a new replica gets its data (docs/replication.md, "Seeding"): "auto" a copy-on-write snapshot of its
    # primary where the runtime can take one, else the engine's copy over the network (pg_basebackup; Redis's
    # full sync), else a full backup of the primary taken for it (MariaDB); "backup" the backup wherever the
    # engine takes one (Trove's way: the primary's server streams it once, to backup storage).
    replica_seed: Literal["auto", "backup"] = "auto"
    # Restore every completed backup into a throwaway server, run the engine's checks, record the result on the
    # backup (`verified`), remove the server (docs/backups.md, "Verified backups").
    verify_backups: bool = False
    # Live reads (list users, databases...) one project may have in flight at once; more answer 503 at once.
    live_reads_per_project: int = Field(default=4, gt=0)
    # How long an account write (database, user, grant) waits to be applied before it answers 202 anyway.
    account_write_wait: float = Field(default=5.0, ge=0)

    max_volume_size_gb: int = Field(default=10, gt=0)
    # Per-project quotas (Trove's max_instances_per_tenant and max_volumes_per_tenant, the latter in GB).
    max_instances_per_project: int = Field(default=10, gt=0)
    max_volumes_per_project: int = Field(default=40, gt=0)
    # Every volume reserves its size against the host's storage; the sum may reach this many times what
    # the host can hold (1.0: a full volume never makes another tenant's writes fail; >1: overcommit).
    storage_overcommit_ratio: float = Field(default=1.0, gt=0)
    region_name: str = "RegionOne"
    default_datastore: str = "postgresql"
    flavors: tuple[FlavorSetting, ...] = DEFAULT_FLAVORS
    # Experimental datastore versions (see `services.classification`) are hidden from non-admin tenants.
    hide_experimental: bool = False

    # The warm pool (docs/warm-pool.md): this many servers per installed engine version are kept built and
    # running for creates of `warm_pool_flavor` with a `warm_pool_volume_gb` volume, so that such a create
    # only adds the tenant's databases and users. 0 turns the pool off. Each slot holds an address, an OS
    # user, a volume and an idle server's memory.
    warm_pool_size: int = Field(default=1, ge=0, le=64)
    warm_pool_flavor: str = "1"
    warm_pool_volume_gb: int = Field(default=1, gt=0)
    # Which engine versions get a pool: JSON list of "postgresql" (every version) or "postgresql:15"; [] = all.
    warm_pool_datastores: tuple[str, ...] = ()
    # How often a worker compares the pool with its target; after a failed build, how long a profile waits.
    warm_pool_interval: float = Field(default=1.0, gt=0)
    warm_pool_failure_pause: float = Field(default=60.0, ge=0)
    # Trove's `root_on_create`: every new instance (of an engine offering root) gets root enabled as the last
    # create step; the create response carries the generated root password, once.
    root_on_create: bool = False
    # The conformance ledger the datastores API classifies versions from (default: the source checkout's).
    classification_ledger: Path | None = None

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.absolute()

    @field_validator("classification_ledger")
    @classmethod
    def _absolute_or_none(cls, value: Path | None) -> Path | None:
        return None if value is None else value.absolute()

    @property
    def warm_pool(self) -> PoolTarget:
        return PoolTarget(
            size=self.warm_pool_size, flavor_id=self.warm_pool_flavor, volume_gb=self.warm_pool_volume_gb,
            failure_pause=self.warm_pool_failure_pause, datastores=self.warm_pool_datastores,
        )

    @property
    def control_dir(self) -> Path:
        """Where everything of the control plane lives (store, key, admin token, project file): a 0700 root
        directory inside the state dir, which instance users can neither read nor list."""
        return self.state_dir / CONTROL_DIR_NAME

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.control_dir / DATABASE_FILE_NAME}"

    @property
    def api_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"
