"""First-start bootstrap: an admin project and an admin token written to `<state_dir>/control/admin-token`
(0600, in the control plane's 0700 directory).

The admin project's id goes to `<state_dir>/control/admin-project` (not a secret) for the CLI's defaults.

Runs at every start and does something only the first time: when the store already holds a project,
it changes nothing and never touches the token file. The token itself is never logged; only the path
of the file that holds it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reddwarf.domain.secret import Secret
from reddwarf.identity.context import ADMIN_ROLE
from reddwarf.identity.tokens import issue_token_in
from reddwarf.settings import Settings
from reddwarf.store.database import Database

logger = logging.getLogger(__name__)

ADMIN_PROJECT_NAME = "admin"
TOKEN_FILE_NAME = "admin-token"
PROJECT_FILE_NAME = "admin-project"


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """`created` is True only on the start that made the project and token. `project_id` is the admin
    project (on later starts: `Settings.bootstrap_project`, else the project named "admin", else None)."""

    created: bool
    token_file: Path
    project_id: str | None
    token_id: str | None = None


def ensure_bootstrap(db: Database, settings: Settings) -> BootstrapResult:
    """Create the admin project and token on first start; do nothing on later starts."""
    token_file = settings.control_dir / TOKEN_FILE_NAME
    # One write unit of work (BEGIN IMMEDIATE on SQLite) so that two processes starting together do
    # not both bootstrap; the file is written before commit, so a failed write leaves no usable token.
    with db.unit_of_work() as uow:
        if uow.identity.list_projects():
            existing = uow.identity.find_project(settings.bootstrap_project or ADMIN_PROJECT_NAME)
            return BootstrapResult(
                created=False, token_file=token_file, project_id=None if existing is None else existing.id
            )
        project = uow.identity.create_project(ADMIN_PROJECT_NAME, project_id=settings.bootstrap_project)
        value = Secret(settings.bootstrap_token) if settings.bootstrap_token else None
        record, plaintext = issue_token_in(
            uow,
            project.id,
            (ADMIN_ROLE,),
            ttl=settings.token_ttl_hours * 3600.0,
            description="bootstrap admin token",
            value=value,
        )
        _write_private_file(token_file, plaintext)
        _write_private_file(settings.control_dir / PROJECT_FILE_NAME, Secret(project.id))
    logger.warning("bootstrapped admin project %s; the admin token is in %s (mode 0600)", project.id, token_file)
    return BootstrapResult(created=True, token_file=token_file, project_id=project.id, token_id=record.id)


def _write_private_file(path: Path, content: Secret) -> None:
    """Write `content` to `path` atomically, 0600 from the first byte (mkstemp creates it so)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content.reveal() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
