"""The tenant commands for snapshots: `reddwarf snapshot create|list|show|delete` (a Typer sub-app, mounted
by `cli/root.py`). A branch of a snapshot is `reddwarf instance branch SOURCE NAME --snapshot ID` (in
`tenant.py`). They go through `reddwarf.client` only and share `tenant.py`'s connection options, `--json`
and exit codes."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

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
from reddwarf.client import Snapshot

snapshot_app = typer.Typer(name="snapshot", help="Take, list, show and delete snapshots of instances.",
                           no_args_is_help=True)

SnapshotArg = Annotated[str, typer.Argument(metavar="ID", help="Snapshot id.")]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds --wait waits before giving up.")]


def _show(snapshots: list[Snapshot], json_output: bool) -> None:
    if json_output:
        output.print_json([s.wire() for s in snapshots] if len(snapshots) != 1 else snapshots[0].wire())
        return
    table = output.list_table("Snapshots")
    for column in ("ID", "Name", "Instance", "Status", "Volume", "Created"):
        table.add_column(column, no_wrap=True)
    for s in snapshots:
        table.add_row(escape(s.id), escape(s.name), escape(s.instance_id), escape(s.status),
                      f"{s.volume.size} GB" if s.volume else "", s.created.isoformat() if s.created else "")
    output.print_table(table)


@snapshot_app.command("create")
def create_snapshot(
    *,
    instance: Annotated[str, typer.Argument(metavar="INSTANCE", help="The running instance to snapshot.")],
    name: Annotated[str, typer.Argument(metavar="NAME", help="The snapshot's name.")],
    description: Annotated[str | None, typer.Option("--description", help="A description.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it is COMPLETED.")] = False,
    timeout: TimeoutOption = 300.0,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """Take a crash-consistent snapshot of a running instance (its writes pause for a fraction of a second)."""
    with connected(endpoint, token_file, project, state_dir) as client:
        made = client.snapshots.create_snapshot(instance, name, description=description)
        if wait:
            made = client.snapshots.wait_for_snapshot(made.id, timeout=timeout)
        _show([made], json_output)


@snapshot_app.command("list")
def list_snapshots(
    *,
    instance: Annotated[str | None, typer.Option("--instance", help="Only this instance's snapshots.")] = None,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """List the project's snapshots (or one instance's)."""
    with connected(endpoint, token_file, project, state_dir) as client:
        found = client.snapshots.list_snapshots(instance)
        if json_output:
            output.print_json([s.wire() for s in found])
            return
        _show(found, False)


@snapshot_app.command("show")
def show_snapshot(
    snapshot_id: SnapshotArg,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """Show one snapshot."""
    with connected(endpoint, token_file, project, state_dir) as client:
        _show([client.snapshots.get_snapshot(snapshot_id)], json_output)


@snapshot_app.command("delete")
def delete_snapshot(
    snapshot_id: SnapshotArg,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it is gone.")] = False,
    timeout: TimeoutOption = 300.0,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """Delete a snapshot (branches made from it keep their data)."""
    with connected(endpoint, token_file, project, state_dir) as client:
        client.snapshots.delete_snapshot(snapshot_id)
        if wait:
            client.snapshots.wait_for_snapshot_delete(snapshot_id, timeout=timeout)
        if json_output:
            output.print_json({"id": snapshot_id, "action": "delete", "accepted": True})
