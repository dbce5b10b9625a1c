"""Rich rendering for the tenant commands: tables for lists, a field table for one instance, JSON for
`--json`, errors on stderr and the `--wait` progress display (on stderr, so stdout stays machine-readable).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reddwarf.client.models import Datastore, DatastoreVersion, Flavor, Instance

if TYPE_CHECKING:
    from rich.progress import Progress

UUID_WIDTH = 36


def stdout_console() -> Console:
    """A console on the current stdout (made per command: tests and pipes swap sys.stdout)."""
    return Console(highlight=False, soft_wrap=False)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """The one thing `--json` writes to stdout: indented JSON, keys in the server's order."""
    stdout_console().out(json.dumps(data, indent=2, ensure_ascii=False), highlight=False)


def print_error(message: str) -> None:
    stderr_console().print(escape(message), style="red", soft_wrap=True)


def print_notice(message: str) -> None:
    stderr_console().print(escape(message), style="yellow", soft_wrap=True)


def print_message(message: str) -> None:
    stdout_console().print(escape(message), soft_wrap=True)


def _text(value: object) -> str:
    return "" if value is None else escape(str(value))


def list_table(title: str) -> Table:
    """A list table that stays readable in an 80-column terminal: light borders, no outer padding."""
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)


# Columns of `instance list`, most important first; the last ones are dropped when the terminal is narrow.
_INSTANCE_COLUMNS = ("ID", "Name", "Status", "Datastore", "Size", "Address", "Flavor")
_ESSENTIAL_COLUMNS = 3
_UNBOUNDED_WIDTH = 10_000


def instances_table(instances: Sequence[Instance], width: int | None = None) -> Table:
    """The instance list; with `width`, drops the least useful columns until the table fits in it."""
    for count in range(len(_INSTANCE_COLUMNS), _ESSENTIAL_COLUMNS - 1, -1):
        table = _instances_table(instances, _INSTANCE_COLUMNS[:count])
        if width is None or _natural_width(table) <= width:
            break
    return table


def _natural_width(table: Table) -> int:
    """The width the table takes when nothing has to wrap."""
    return Console(width=_UNBOUNDED_WIDTH).measure(table).maximum


def _instances_table(instances: Sequence[Instance], columns: Sequence[str]) -> Table:
    table = list_table("Instances")
    for column in columns:
        table.add_column(column, no_wrap=column in ("ID", "Status", "Size"), overflow="fold")
    for instance in instances:
        datastore = instance.datastore
        cells = {
            "ID": _text(instance.id),
            "Name": _text(instance.name),
            "Status": _status(instance),
            "Datastore": _text(f"{datastore.type} {datastore.version}" if datastore else None),
            "Size": _text(f"{instance.volume.size} GB" if instance.volume else None),
            "Address": _text(_address(instance)),
            "Flavor": _text(instance.flavor.id if instance.flavor else None),
        }
        table.add_row(*(cells[column] for column in columns))
    return table


def instance_table(instance: Instance) -> Table:
    """Every field a tenant needs of one instance, one per row."""
    table = Table(show_header=True, title=f"Instance {escape(instance.name)}", title_justify="left")
    table.add_column("Field", no_wrap=True, style="bold")
    table.add_column("Value", overflow="fold")
    rows: list[tuple[str, object]] = [
        ("id", instance.id),
        ("name", instance.name),
        ("status", None),
        ("operating_status", instance.operating_status or None),
        ("datastore", instance.datastore.type if instance.datastore else None),
        ("datastore_version", _version(instance)),
        ("flavor", instance.flavor.id if instance.flavor else None),
        ("volume", _volume(instance)),
        ("address", _address(instance)),
        ("region", instance.region),
        ("created", instance.created.isoformat() if instance.created else None),
        ("updated", instance.updated.isoformat() if instance.updated else None),
        ("tenant_id", instance.tenant_id),
        ("replica_of", instance.source_id),
        ("replicas", ", ".join(instance.replica_ids) or None),
    ]
    for field, value in rows:
        if field == "status":
            table.add_row(field, _status(instance))
        elif value is not None:
            table.add_row(field, _text(value))
    if instance.fault is not None:
        table.add_row("fault", _text(instance.fault.message), style="red")
        if instance.fault.details:
            table.add_row("fault_details", _text(instance.fault.details))
    return table


def datastores_table(datastores: Sequence[Datastore]) -> Table:
    table = list_table("Datastores")
    table.add_column("Name", no_wrap=True)
    table.add_column("Versions")
    table.add_column("Default version", no_wrap=True)
    table.add_column("ID", no_wrap=True, min_width=UUID_WIDTH)
    for datastore in datastores:
        table.add_row(
            _text(datastore.name),
            _text(", ".join(version.name for version in datastore.versions)),
            _text(datastore.default_version_name),
            _text(datastore.id),
        )
    return table


def flavors_table(flavors: Sequence[Flavor]) -> Table:
    table = list_table("Flavors")
    table.add_column("ID", no_wrap=True)
    table.add_column("Name", no_wrap=True)
    table.add_column("RAM (MB)", justify="right")
    table.add_column("vCPUs", justify="right")
    for flavor in flavors:
        table.add_row(_text(flavor.id), _text(flavor.name), _text(flavor.ram), _text(flavor.vcpus))
    return table


def print_table(table: Table) -> None:
    stdout_console().print(table)


def print_instances(instances: Sequence[Instance]) -> None:
    console = stdout_console()
    console.print(instances_table(instances, console.width))


class WaitDisplay:
    """What `--wait` shows on stderr: a spinner, the instance's status and the elapsed time."""

    def __init__(self, progress: Progress, task: Any, action: str) -> None:
        self._progress = progress
        self._task = task
        self._action = action
        self._started = time.monotonic()

    def update(self, instance: Instance) -> None:
        """The `on_poll` callback of the client's waits."""
        status = instance.status
        if instance.operating_status:
            status += f"/{instance.operating_status}"
        self._progress.update(
            self._task, description=f"{escape(self._action)} {escape(instance.name)}: {escape(status)}"
        )

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started


@contextmanager
def wait_display(action: str, what: str) -> Iterator[WaitDisplay]:
    """A transient progress display on stderr for the duration of a wait."""
    # Imported here, not at the top: only `--wait` shows progress, and every tenant command pays for the
    # imports at the top of this module at start-up (bench/cli_startup.py).
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=stderr_console(),
        transient=True,
    )
    with progress:
        task = progress.add_task(f"{escape(action)} {escape(what)}", total=None)
        yield WaitDisplay(progress, task, action)


_STATUS_STYLES = {"ACTIVE": "green", "ERROR": "red", "BUILD": "yellow", "SHUTDOWN": "dim"}


def _status(instance: Instance) -> str:
    style = _STATUS_STYLES.get(instance.status, "yellow")
    return f"[{style}]{escape(instance.status)}[/{style}]"


def _version(instance: Instance) -> str | None:
    datastore = instance.datastore
    if datastore is None:
        return None
    if datastore.version_number and datastore.version_number != datastore.version:
        return f"{datastore.version} ({datastore.version_number})"
    return datastore.version


def _volume(instance: Instance) -> str | None:
    volume = instance.volume
    if volume is None:
        return None
    if volume.used is not None:
        return f"{volume.size} GB ({volume.used:.2f} GB used)"
    return f"{volume.size} GB"


def _address(instance: Instance) -> str | None:
    address = instance.address
    if address is None:
        return None
    if not instance.port:
        return address
    return f"[{address}]:{instance.port}" if ":" in address else f"{address}:{instance.port}"


def versions_table(datastore: str, versions: Sequence[DatastoreVersion]) -> Table:
    table = list_table(f"Versions of {escape(datastore)}")
    table.add_column("Name", no_wrap=True)
    table.add_column("Version", no_wrap=True)
    table.add_column("Active", no_wrap=True)
    table.add_column("ID", no_wrap=True, min_width=UUID_WIDTH)
    for version in versions:
        active = "" if version.active is None else ("yes" if version.active else "no")
        table.add_row(_text(version.name), _text(version.version_number or version.version), active, _text(version.id))
    return table
