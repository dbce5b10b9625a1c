"""The typed HTTP client of Reddwarf's public API (OpenStack Trove's v1.0 wire format).

`ReddwarfClient` (in `http.py`) speaks to `/v1.0/{project_id}/...` with `X-Auth-Token` and returns the
pydantic models of `models.py` (backups through `ReddwarfClient.backups`, in `backups.py`); every refusal
of the server becomes a `ReddwarfAPIError` parsed from Trove's fault body (`errors.py`). The tenant
commands of the `reddwarf` CLI and the end-to-end tests use it; it imports nothing of the house but
`reddwarf.domain` (for `Secret`), so any program may import it.
"""

from reddwarf.client.errors import (
    BackupFailed,
    InstanceFaulted,
    ReddwarfAPIError,
    ReddwarfClientError,
    ReddwarfConnectionError,
    SnapshotFailed,
    WaitTimeout,
)
from reddwarf.client.http import ReddwarfClient
from reddwarf.client.models import (
    Backup,
    BackupPage,
    DatabaseRequest,
    Datastore,
    DatastoreVersion,
    Fault,
    Flavor,
    Instance,
    InstancePage,
    Snapshot,
    UserRequest,
)

__all__ = [
    "Backup",
    "BackupFailed",
    "BackupPage",
    "DatabaseRequest",
    "Datastore",
    "DatastoreVersion",
    "Fault",
    "Flavor",
    "Instance",
    "InstanceFaulted",
    "InstancePage",
    "ReddwarfAPIError",
    "ReddwarfClient",
    "ReddwarfClientError",
    "ReddwarfConnectionError",
    "Snapshot",
    "SnapshotFailed",
    "UserRequest",
    "WaitTimeout",
]
