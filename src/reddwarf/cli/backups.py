"""The tenant commands for backups: `reddwarf backup create|list|show|delete` (a Typer sub-app).

They go through `reddwarf.client` only, like `cli/tenant.py`, whose connection options, `--json` and exit
codes they share (0 ok, 1 API or connection error, a failed backup or a timeout, 2 usage error). A create or
delete is accepted at once (202); `--wait` polls until the backup is COMPLETED (a progress bar of the bytes
the tool streamed so far, with the phase, on stderr) or gone. A restore is `reddwarf instance create ...
--backup ID` (in `tenant.py`). `cli/root.py` mounts `backup_app`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from reddwarf.cli import output
from reddwarf.cli.tenant import (
    DEFAULT_ENDPOINT,
    DEFAULT_STATE_DIR,
    EndpointOption,
    JsonOption,
    ProjectOption,
    StateDirOption,
    TokenFileOption,
    connected,
)
from reddwarf.client import Backup
from reddwarf.client.backups import BackupsClient

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

backup_app = typer.Typer(name="backup", help="Create, list, show and delete backups of instances.",
                         no_args_is_help=True)

# A backup streams the whole data directory: an hour before `--wait` gives up (the backup itself goes on).
DEFAULT_WAIT_TIMEOUT = 3600.0
_BYTES_PER_GB = 1024.0**3

BackupArg = Annotated[str, typer.Argument(metavar="ID", help="Backup id.")]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds --wait waits before giving up.")]


@contextmanager
def _backups(
    endpoint: str, token_file: Path | None, project: str | None, state_dir: Path
) -> Iterator[BackupsClient]:
    """The backups client for one command (`tenant.connected`: errors, failed backups and timeouts become exit
    code 1 with the message on stderr)."""
    with connected(endpoint, token_file, project, state_dir) as client:
        yield client.backups


# -- rendering ----------------------------------------------------------------------------------------


def human_size(gb: float | None) -> str | None:
    """A size the server gives in GB (a float) in the unit that reads best: 12.4 MiB, 1.50 GiB."""
    if gb is None:
        return None
    size = gb * _BYTES_PER_GB
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.2f} GiB"


def _bytes(count: int) -> str:
    return human_size(count / _BYTES_PER_GB) or ""


_STATUS_STYLES = {"COMPLETED": "green", "FAILED": "red", "DELETE_FAILED": "red"}


def _status(backup: Backup) -> str:
    style = _STATUS_STYLES.get(backup.status, "yellow")
    return f"[{style}]{escape(backup.status)}[/{style}]"


def _text(value: object) -> str:
    return "" if value is None else escape(str(value))


def _phase(backup: Backup) -> str:
    return backup.progress.phase if backup.progress is not None else ""


def _datastore(backup: Backup) -> str | None:
    return None if backup.datastore is None else f"{backup.datastore.type} {backup.datastore.version}"


def backups_table(backups: Sequence[Backup]) -> Table:
    """The backup list: an incremental names its parent."""
    table = Table(title="Backups", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("ID", "Name", "Status", "Instance", "Parent", "Datastore", "Size", "Created"):
        table.add_column(column, no_wrap=column in ("ID", "Status", "Size"), overflow="fold")
    for backup in backups:
        table.add_row(
            _text(backup.id), _text(backup.name), _status(backup), _text(backup.instance_id), _text(backup.parent_id),
            _text(_datastore(backup)), _text(human_size(backup.size)),
            _text(backup.created.isoformat() if backup.created else None),
        )
    return table


def backup_table(backup: Backup) -> Table:
    """Every field of one backup, one per row; the progress while it runs, the fault when it failed."""
    table = Table(show_header=True, title=f"Backup {escape(backup.name)}", title_justify="left")
    table.add_column("Field", no_wrap=True, style="bold")
    table.add_column("Value", overflow="fold")
    running = backup.status in ("NEW", "BUILDING") or (
        backup.progress is not None and backup.progress.phase == "deleting"
    )
    rows: list[tuple[str, object]] = [
        ("id", backup.id),
        ("name", backup.name),
        ("description", backup.description),
        ("status", None),
        ("progress", _progress(backup) if running else None),
        ("instance_id", backup.instance_id),
        ("parent_id", backup.parent_id),
        ("datastore", backup.datastore.type if backup.datastore else None),
        ("datastore_version", backup.datastore.version if backup.datastore else None),
        ("size", human_size(backup.size)),
        ("uncompressed_size", human_size(backup.uncompressed_size)),
        ("locationRef", backup.locationRef),
        ("created", backup.created.isoformat() if backup.created else None),
        ("updated", backup.updated.isoformat() if backup.updated else None),
        ("project_id", backup.project_id),
        ("verified", None if backup.verified is None else ("yes" if backup.verified else "NO")),
        ("verified_at", backup.verified_at.isoformat() if backup.verified_at else None),
        ("verification", backup.verification),
    ]
    for field, value in rows:
        if field == "status":
            table.add_row(field, _status(backup))
        elif value is not None:
            table.add_row(field, _text(value))
    if backup.fault is not None:
        table.add_row("fault", _text(backup.fault.message), style="red")
        if backup.fault.details:
            table.add_row("fault_details", _text(backup.fault.details))
    return table


def _progress(backup: Backup) -> str | None:
    if backup.progress is None:
        return None
    return f"{backup.progress.phase}, {_bytes(backup.progress.bytes_done)} streamed"


class BackupProgressDisplay:
    """What `backup create --wait` shows on stderr: the status and phase, a bar of the bytes streamed so far
    (the total is not known before the end: the bar pulses), the rate and the elapsed time; `backup delete
    --wait` shows a spinner, the status and phase."""

    def __init__(self, progress: Progress, task: TaskID, action: str) -> None:
        self._progress = progress
        self._task = task
        self._action = action

    def update(self, backup: Backup) -> None:
        """The `on_progress` callback of the client's waits."""
        phase = _phase(backup)
        done = backup.progress.bytes_done if backup.progress is not None else 0
        state = f"{backup.status}/{phase}" if phase else backup.status
        description = f"{escape(self._action)} {escape(backup.name)}: {escape(state)}"
        if backup.status == "COMPLETED" and phase == "done":
            self._progress.update(self._task, description=description, completed=done, total=max(done, 1))
        else:
            self._progress.update(self._task, description=description, completed=done)


@contextmanager
def backup_progress(action: str, what: str, *, stream: bool = True) -> Iterator[BackupProgressDisplay]:
    """A transient display on stderr for the duration of a wait (stdout stays machine-readable): with
    `stream`, a progress bar of the bytes streamed; without, a spinner."""
    # Imported here: only `--wait` draws it (start-up time of every other command, bench/cli_startup.py).
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    columns: list[ProgressColumn | str] = [TextColumn("{task.description}")]
    if stream:
        columns += [BarColumn(), DownloadColumn(binary_units=True), TransferSpeedColumn()]
    else:
        columns.insert(0, SpinnerColumn())
    progress = Progress(*columns, TimeElapsedColumn(), console=output.stderr_console(), transient=True)
    with progress:
        task = progress.add_task(f"{escape(action)} {escape(what)}", total=None)
        yield BackupProgressDisplay(progress, task, action)


def _print_backup(backup: Backup, json_output: bool) -> None:
    if json_output:
        output.print_json(backup.wire())
    else:
        output.print_table(backup_table(backup))


# -- commands -----------------------------------------------------------------------------------------


@backup_app.command("create")
def create_backup(
    *,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Backup name.")],
    instance: Annotated[str, typer.Option("--instance", help="Id of the instance to back up.")],
    description: Annotated[str | None, typer.Option("--description", help="A description.")] = None,
    parent: Annotated[
        str | None, typer.Option("--parent", help="Take an incremental backup on this backup (of the same instance).")
    ] = None,
    incremental: Annotated[
        bool,
        typer.Option("--incremental", help="Take an incremental backup on the instance's latest completed backup."),
    ] = False,
    from_snapshot: Annotated[
        bool,
        typer.Option("--from-snapshot", help="Take a snapshot (kept, in your snapshots) and stream a full backup "
                     "from it in the background: the instance is held only for the snapshot's moment."),
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until the backup is COMPLETED, showing its progress (exit 1 if it "
                           "fails).")
    ] = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """Back up an instance (full, or incremental with --parent or --incremental); the instance keeps serving."""
    with _backups(endpoint, token_file, project, state_dir) as backups:
        backup = backups.create_backup(
            name, instance, description=description, parent_id=parent, incremental=incremental,
            from_snapshot=from_snapshot,
        )
        if wait:
            with backup_progress("Backing up", backup.name) as display:
                backup = backups.wait_for_backup(backup.id, timeout=timeout, on_progress=display.update)
    _print_backup(backup, json_output)


@backup_app.command("list")
def list_backups(
    *,
    instance: Annotated[str | None, typer.Option("--instance", help="Only the backups of this instance.")] = None,
    datastore: Annotated[
        str | None, typer.Option("--datastore", help="Only the backups of this datastore (e.g. postgresql).")
    ] = None,
    all_projects: Annotated[
        bool, typer.Option("--all-projects", help="Every project's backups (administrators).")
    ] = False,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """List the project's backups, oldest first (every page)."""
    with _backups(endpoint, token_file, project, state_dir) as backups:
        found = backups.list_backups(instance, datastore=datastore, all_projects=all_projects)
    if json_output:
        output.print_json([backup.wire() for backup in found])
        return
    output.print_table(backups_table(found))


@backup_app.command("show")
def show_backup(
    *,
    backup_id: BackupArg,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """Show one backup: its progress while it runs, its fault when it failed."""
    with _backups(endpoint, token_file, project, state_dir) as backups:
        backup = backups.get_backup(backup_id)
    _print_backup(backup, json_output)


@backup_app.command("delete")
def delete_backup(
    *,
    backup_id: BackupArg,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the backup is gone.")] = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """Delete a backup and, first, its incremental backups. With --json, prints {"id", "action", "accepted",
    "deleted"}."""
    with _backups(endpoint, token_file, project, state_dir) as backups:
        # Its fault before the delete: a retried delete of a DELETE_FAILED backup shows it until the retry ends.
        old_fault = backups.get_backup(backup_id).fault if wait else None
        backups.delete_backup(backup_id)
        if wait:
            with backup_progress("Deleting", backup_id, stream=False) as display:
                backups.wait_for_backup_delete(
                    backup_id, timeout=timeout, old_fault=old_fault, on_progress=display.update
                )
    if json_output:
        output.print_json(_accepted(backup_id, "delete", deleted=wait))
    elif wait:
        output.print_message(f"Backup {backup_id} deleted.")
    else:
        output.print_message(f"Delete of backup {backup_id} accepted.")


def _accepted(backup_id: str, action: str, **extra: Any) -> dict[str, Any]:
    return {"id": backup_id, "action": action, "accepted": True, **extra}
