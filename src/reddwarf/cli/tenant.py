"""The tenant commands of `reddwarf`: `instance`, `datastore` and `flavor` (Typer sub-apps).

They go through `reddwarf.client` only (import-linter enforces it), so they work against any Reddwarf or
Trove-compatible endpoint. Every command takes the connection options (`--endpoint`, `--token-file`,
`--project`, `--state-dir`, read from `REDDWARF_*` by default) and `--json`, which prints the wire objects
and nothing else on stdout. No option takes a secret: any local user can read a command line
(`/proc/*/cmdline`), so the token comes from `REDDWARF_TOKEN`, a token file or the admin token file, and
passwords are prompted for (hidden) or read from stdin. Exit codes: 0 ok, 1 API or connection error
(printed on stderr as "Error (404 itemNotFound): ..."), 2 usage error. `cli/root.py` mounts `instance_app`,
`datastore_app` and `flavor_app`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from reddwarf.cli import output
from reddwarf.client import (
    BackupFailed,
    Flavor,
    InstanceFaulted,
    ReddwarfAPIError,
    ReddwarfClient,
    ReddwarfConnectionError,
    SnapshotFailed,
    UserRequest,
    WaitTimeout,
)
from reddwarf.domain.secret import Secret

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "http://127.0.0.1:8779"
DEFAULT_STATE_DIR = Path("/var/lib/reddwarf")
# In the control plane's 0700 directory of the state dir (readable by the control plane's user only).
ADMIN_TOKEN_FILE = "control/admin-token"
ADMIN_PROJECT_FILE = "control/admin-project"
DEFAULT_WAIT_TIMEOUT = 900.0

instance_app = typer.Typer(
    name="instance", help="Create, list, show, restart and delete database instances.", no_args_is_help=True
)
datastore_app = typer.Typer(name="datastore", help="List the datastores and versions on offer.", no_args_is_help=True)
flavor_app = typer.Typer(name="flavor", help="List the flavors (RAM and vCPUs) on offer.", no_args_is_help=True)

_CONNECTION = "Connection"

EndpointOption = Annotated[
    str,
    typer.Option("--endpoint", envvar="REDDWARF_ENDPOINT", rich_help_panel=_CONNECTION, help="API root URL."),
]
TOKEN_VARIABLE = "REDDWARF_TOKEN"
TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        envvar="REDDWARF_TOKEN_FILE",
        show_default=False,
        rich_help_panel=_CONNECTION,
        help="A file whose first line is the API token. Without it: the REDDWARF_TOKEN environment variable, "
        "else the admin token file in the state directory, when readable. (There is no --token: a command "
        "line is visible to every local user.)",
    ),
]
ProjectOption = Annotated[
    str | None,
    typer.Option(
        "--project",
        envvar="REDDWARF_PROJECT",
        show_default=False,
        rich_help_panel=_CONNECTION,
        help="Project id. Default with the admin token: the admin-project file in the state directory.",
    ),
]
StateDirOption = Annotated[
    Path,
    typer.Option(
        "--state-dir",
        envvar="REDDWARF_STATE_DIR",
        rich_help_panel=_CONNECTION,
        help="Where a local server keeps admin-token and admin-project.",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the wire objects as JSON, and nothing else, on stdout.")
]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds --wait waits before giving up.")]


USER_SYNTAX = "NAME[:DB1,DB2]"


@dataclass(frozen=True, slots=True)
class UserOption:
    """One `--user` value. `databases` None: every `--database` of the same command."""

    name: str
    databases: tuple[str, ...] | None


def parse_user_option(value: str) -> UserOption:
    """Parse `NAME` (access to every `--database` of the command), `NAME:DB1,DB2` (access to those) or
    `NAME:` (no database). Never a password: it is prompted for, or read with `--password-stdin`."""
    name, colon, databases = value.partition(":")
    name = name.strip()
    if not name:
        raise typer.BadParameter(f"a user has no name; use {USER_SYNTAX}", param_hint="--user")
    if ":" in databases:
        raise typer.BadParameter(
            f"user {name}: use {USER_SYNTAX}; a password is never given on the command line (any local user "
            "can read it there): it is prompted for, or read with --password-stdin",
            param_hint="--user",
        )
    if not colon:
        return UserOption(name=name, databases=None)
    dbs = tuple(db.strip() for db in databases.split(",") if db.strip())
    if databases.strip() and not dbs:
        raise typer.BadParameter(f"user {name}: the database list is empty", param_hint="--user")
    return UserOption(name=name, databases=dbs)


def resolve_connection(
    endpoint: str, token_file: Path | None, project: str | None, state_dir: Path
) -> tuple[str, Secret, str]:
    """The endpoint, token and project to use; a usage error (exit 2) says what is missing."""
    if token_file is not None:
        token = _read_state_file(token_file)
        if token is None:
            raise typer.BadParameter(f"{token_file} is missing, unreadable or empty", param_hint="--token-file")
    else:
        token = os.environ.get(TOKEN_VARIABLE) or None
    admin_token = _read_state_file(state_dir / ADMIN_TOKEN_FILE)
    secret = Secret(token) if token else (Secret(admin_token) if admin_token else None)
    if secret is None:
        raise typer.BadParameter(
            f"no token: set {TOKEN_VARIABLE}, pass --token-file, or make {state_dir / ADMIN_TOKEN_FILE} readable",
            param_hint="--token-file",
        )
    if not project and admin_token and secret.reveal() == admin_token:
        project = _read_state_file(state_dir / ADMIN_PROJECT_FILE)
    if not project:
        raise typer.BadParameter("no project: pass --project or set REDDWARF_PROJECT", param_hint="--project")
    return endpoint, secret, project


def _read_state_file(path: Path) -> str | None:
    """The first line of a small state file, or None when it is missing or unreadable."""
    try:
        with path.open(encoding="utf-8") as handle:
            value = handle.readline().strip()
    except OSError:
        return None
    return value or None


@contextmanager
def connected(
    endpoint: str, token_file: Path | None, project: str | None, state_dir: Path
) -> Iterator[ReddwarfClient]:
    """A connected client for one command; API and connection errors, faults and timeouts of waits become
    exit code 1 with the message on stderr."""
    endpoint, secret, project = resolve_connection(endpoint, token_file, project, state_dir)
    try:
        client = ReddwarfClient(endpoint, secret, project)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--endpoint") from exc
    with client, _errors_exit():
        yield client


@contextmanager
def _errors_exit() -> Iterator[None]:
    try:
        yield
    except ReddwarfAPIError as exc:
        output.print_error(f"Error ({exc.status} {exc.fault_name}): {exc.message}")
        raise typer.Exit(1) from exc
    except InstanceFaulted as exc:
        output.print_error(f"Error: {exc}")
        if exc.instance.fault is not None and exc.instance.fault.details:
            output.print_error(exc.instance.fault.details)
        raise typer.Exit(1) from exc
    except BackupFailed as exc:
        output.print_error(f"Error: {exc}")
        if exc.backup.fault is not None and exc.backup.fault.details:
            output.print_error(exc.backup.fault.details)
        raise typer.Exit(1) from exc
    except SnapshotFailed as exc:
        output.print_error(f"Error: {exc}")
        raise typer.Exit(1) from exc
    except (ReddwarfConnectionError, WaitTimeout) as exc:
        output.print_error(f"Error: {exc}")
        raise typer.Exit(1) from exc


def _users_with_passwords(
    users: Sequence[UserOption], databases: Sequence[str], password_stdin: bool
) -> list[UserRequest]:
    """Each user with its password, from stdin (one line per user, in order) or a hidden prompt, and its
    databases: those it names, else every `--database` of the command."""
    stdin = typer.get_text_stream("stdin") if password_stdin else None
    requests: list[UserRequest] = []
    for user in users:
        password: Secret
        if stdin is not None:
            line = stdin.readline().rstrip("\r\n")
            if not line:
                raise typer.BadParameter(f"no password for user {user.name} on stdin", param_hint="--password-stdin")
            password = Secret(line)
        else:
            typed: str = typer.prompt(
                f"Password for user {user.name}", hide_input=True, confirmation_prompt=True, err=True
            )
            if not typed:
                raise typer.BadParameter(f"empty password for user {user.name}", param_hint="--user")
            password = Secret(typed)
        granted = tuple(databases) if user.databases is None else user.databases
        requests.append(UserRequest(name=user.name, password=password, databases=granted))
    return requests


def _resolve_flavor(client: ReddwarfClient, value: str) -> str:
    """A flavor id from an id or a name; an unknown value is sent as is (the server answers 404)."""
    flavors: list[Flavor] = client.list_flavors()
    for flavor in flavors:
        if value in (flavor.id, flavor.str_id):
            return flavor.id
    for flavor in flavors:
        if flavor.name == value:
            return flavor.id
    return value


def _accepted(instance_id: str, action: str, **extra: Any) -> dict[str, Any]:
    return {"id": instance_id, "action": action, "accepted": True, **extra}


@instance_app.command("create")
def create_instance(
    *,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Instance name.")],
    flavor: Annotated[
        str | None, typer.Option("--flavor", help="Flavor id or name (see `flavor list`). Required, but for replicas.")
    ] = None,
    size: Annotated[
        int | None, typer.Option("--size", min=1, help="Volume size in GB. Required, but for replicas.")
    ] = None,
    replica_of: Annotated[
        str | None,
        typer.Option("--replica-of", metavar="ID", help="Create replicas of this instance: they take its flavor, "
                     "size and version, and follow it (read-only)."),
    ] = None,
    replica_count: Annotated[
        int | None, typer.Option("--replica-count", min=1, max=3, help="How many replicas (with --replica-of).")
    ] = None,
    datastore: Annotated[
        str | None, typer.Option("--datastore", help="Datastore, e.g. postgresql. Default: the server's.")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Datastore version, e.g. 15. Default: the newest.")
    ] = None,
    database: Annotated[
        list[str] | None, typer.Option("--database", help="A database to create; repeat for more.")
    ] = None,
    user: Annotated[
        list[str] | None,
        typer.Option(
            "--user",
            metavar=USER_SYNTAX,
            help="A user to create; repeat for more. NAME gets access to every --database of this command; "
            "NAME:DB1,DB2 to those only; NAME: to none. Its password is asked for (hidden), or read "
            "from --password-stdin, never taken from the command line.",
        ),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the users' passwords from stdin, one line each, in the order of --user (instead of asking).",
        ),
    ] = False,
    backup: Annotated[
        str | None,
        typer.Option(
            "--backup",
            metavar="ID",
            help="Restore this backup (with its incremental chain) into the new instance. --datastore and "
            "--version default to the backup's.",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the instance is ACTIVE.")] = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """Create a database instance, empty, restored from a backup (--backup), or as replicas of another
    (--replica-of); with --wait, wait until it is ACTIVE (exit 1 if it fails)."""
    users = [parse_user_option(value) for value in user or ()]
    if replica_of is None and (flavor is None or size is None):
        raise typer.BadParameter("--flavor and --size are required (but for replicas, --replica-of)",
                                 param_hint="--flavor/--size")
    if replica_of is None and replica_count is not None:
        raise typer.BadParameter("only with --replica-of", param_hint="--replica-count")
    with connected(endpoint, token_file, project, state_dir) as client:
        if replica_of is not None:
            # What a replica may not choose is refused by the server, with Trove's message.
            if any(v is not None for v in (flavor, size, datastore, version, backup)) or user or database:
                raise typer.BadParameter("a replica takes its source's flavor, size, version and accounts",
                                         param_hint="--replica-of")
            instance = client.create_replicas(name, replica_of, replica_count)
        else:
            assert flavor is not None and size is not None
            user_requests = _users_with_passwords(users, database or (), password_stdin)
            instance = client.create_instance(
                name,
                _resolve_flavor(client, flavor),
                size,
                datastore=datastore,
                version=version,
                databases=database or (),
                users=user_requests,
                backup_id=backup,
            )
        if wait:
            with output.wait_display("Restoring" if backup else "Creating", instance.name) as display:
                instance = client.wait_for_instance(instance.id, timeout=timeout, on_poll=display.update)
        if json_output:
            output.print_json(instance.wire())
            return
        output.print_table(output.instance_table(instance))


@instance_app.command("branch")
def branch_instance(
    *,
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="The running instance to branch (its id).")],
    name: Annotated[str, typer.Argument(metavar="NAME", help="The new instance's name.")],
    flavor: Annotated[
        str | None, typer.Option("--flavor", help="Flavor id or name. Default: the source's.")
    ] = None,
    size: Annotated[
        int | None, typer.Option("--size", min=1, help="Volume size in GB, at least the source's. Default: its.")
    ] = None,
    snapshot: Annotated[
        str | None, typer.Option("--snapshot", metavar="ID", help="Branch this snapshot of SOURCE instead of "
                                 "SOURCE as it is now (see `snapshot create`).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the branch is ACTIVE.")] = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """Create a new instance with a copy of a running instance's data at this moment (a copy-on-write
    snapshot: the source pauses its writes for a fraction of a second). The branch has its own address,
    OS user and admin password; the tenant's users and passwords are the source's."""
    with connected(endpoint, token_file, project, state_dir) as client:
        origin = client.get_instance(source)
        flavor_id = _resolve_flavor(client, flavor) if flavor is not None else (
            origin.flavor.id if origin.flavor is not None else "")
        volume = size if size is not None else (origin.volume.size if origin.volume is not None else 1)
        instance = (client.create_instance(name, flavor_id, volume, snapshot_id=snapshot) if snapshot is not None
                    else client.create_instance(name, flavor_id, volume, branch_of=origin.id))
        if wait:
            with output.wait_display("Branching", instance.name) as display:
                instance = client.wait_for_instance(instance.id, timeout=timeout, on_poll=display.update)
        if json_output:
            output.print_json(instance.wire())
            return
        output.print_table(output.instance_table(instance))


@instance_app.command("list")
def list_instances(
    *,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Show one page of this many instances.")] = None,
    marker: Annotated[str | None, typer.Option("--marker", help="Show the page after this instance id.")] = None,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """List the project's instances (every page, unless --limit or --marker is given)."""
    with connected(endpoint, token_file, project, state_dir) as client:
        single_page = limit is not None or marker is not None
        instances = client.list_instances(limit, marker, all=not single_page)
        if json_output:
            output.print_json([instance.wire() for instance in instances])
            return
        output.print_instances(instances)


@instance_app.command("show")
def show_instance(
    *,
    instance_id: Annotated[str, typer.Argument(metavar="ID", help="Instance id.")],
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """Show one instance, with its fault when the last operation failed."""
    with connected(endpoint, token_file, project, state_dir) as client:
        instance = client.get_instance(instance_id)
        if json_output:
            output.print_json(instance.wire())
            return
        output.print_table(output.instance_table(instance))


@instance_app.command("delete")
def delete_instance(
    *,
    instance_id: Annotated[str, typer.Argument(metavar="ID", help="Instance id.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the instance is gone.")] = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """Delete an instance and its data. With --json, prints {"id", "action", "accepted", "deleted"}."""
    with connected(endpoint, token_file, project, state_dir) as client:
        client.delete_instance(instance_id)
        if wait:
            with output.wait_display("Deleting", instance_id) as display:
                client.wait_for_delete(instance_id, timeout=timeout, on_poll=display.update)
        if json_output:
            output.print_json(_accepted(instance_id, "delete", deleted=wait))
        elif wait:
            output.print_message(f"Instance {instance_id} deleted.")
        else:
            output.print_message(f"Delete of instance {instance_id} accepted.")


@instance_app.command("detach")
def detach_instance(
    *,
    instance_id: Annotated[str, typer.Argument(metavar="ID", help="The replica's id.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it is ACTIVE and read-write.")] = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """Detach a replica from its source: it becomes an independent read-write instance with its own admin
    credential (Trove's detach). With --json, prints {"id", "action", "accepted"} (the instance with --wait)."""
    with connected(endpoint, token_file, project, state_dir) as client:
        client.detach_replica(instance_id)
        _role_change(client, instance_id, "detach", "Detaching", wait=wait, timeout=timeout, json_output=json_output)


@instance_app.command("promote")
def promote_instance(
    *,
    instance_id: Annotated[str, typer.Argument(metavar="ID", help="The replica's id.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it is ACTIVE and the primary.")] = False,
    timeout: TimeoutOption = DEFAULT_WAIT_TIMEOUT,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """Promote a replica to the primary of its set while the primary is alive (a switchover: Trove's
    promote_to_replica_source); no acknowledged write is lost, and the old primary and the other replicas
    follow it. With --json, prints {"id", "action", "accepted"} (the instance with --wait)."""
    with connected(endpoint, token_file, project, state_dir) as client:
        client.promote_replica(instance_id)
        _role_change(client, instance_id, "promote", "Promoting", wait=wait, timeout=timeout, json_output=json_output)


@instance_app.command("eject")
def eject_instance(
    *,
    instance_id: Annotated[str, typer.Argument(metavar="ID", help="The replication source's id.")],
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """Eject a replication source that has been unhealthy long enough (a failover: Trove's
    eject_replica_source): it is fenced and its most advanced replica becomes the primary. With --json, prints
    {"id", "action", "accepted"}."""
    with connected(endpoint, token_file, project, state_dir) as client:
        client.eject_replica_source(instance_id)
        _role_change(client, instance_id, "eject", "Ejecting", wait=False, timeout=0.0, json_output=json_output)


def _role_change(
    client: ReddwarfClient, instance_id: str, action: str, doing: str, *, wait: bool, timeout: float,
    json_output: bool,
) -> None:
    """What `detach` and `promote` print: accepted, or (with --wait) the instance once it is ACTIVE and no
    replica."""
    if not wait:
        if json_output:
            output.print_json(_accepted(instance_id, action))
        else:
            output.print_message(f"{action.capitalize()} of instance {instance_id} accepted.")
        return
    with output.wait_display(doing, instance_id) as display:
        instance = client.wait_for_detach(instance_id, timeout=timeout, on_poll=display.update)
    if json_output:
        output.print_json(instance.wire())
    else:
        output.print_table(output.instance_table(instance))


@instance_app.command("restart")
def restart_instance(
    *,
    instance_id: Annotated[str, typer.Argument(metavar="ID", help="Instance id.")],
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """Restart the database server of an ACTIVE instance."""
    with connected(endpoint, token_file, project, state_dir) as client:
        client.restart_instance(instance_id)
        if json_output:
            output.print_json(_accepted(instance_id, "restart"))
        else:
            output.print_message(f"Restart of instance {instance_id} accepted.")


@instance_app.command("rename")
def rename_instance(
    *,
    instance_id: Annotated[str, typer.Argument(metavar="ID", help="Instance id.")],
    name: Annotated[str, typer.Argument(metavar="NAME", help="The new name.")],
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """Rename an instance."""
    with connected(endpoint, token_file, project, state_dir) as client:
        client.rename_instance(instance_id, name)
        if json_output:
            output.print_json(_accepted(instance_id, "rename", name=name))
        else:
            output.print_message(f"Instance {instance_id} renamed to {name}.")


@datastore_app.command("list")
def list_datastores(
    *,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """List the datastores and their versions."""
    with connected(endpoint, token_file, project, state_dir) as client:
        datastores = client.list_datastores()
        if json_output:
            output.print_json([datastore.wire() for datastore in datastores])
            return
        output.print_table(output.datastores_table(datastores))


@datastore_app.command("versions")
def list_datastore_versions(
    *,
    datastore: Annotated[str, typer.Argument(metavar="DATASTORE", help="Datastore name or id.")],
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """List the versions of one datastore."""
    with connected(endpoint, token_file, project, state_dir) as client:
        versions = client.list_datastore_versions(datastore)
        if json_output:
            output.print_json([version.wire() for version in versions])
            return
        output.print_table(output.versions_table(datastore, versions))


@flavor_app.command("list")
def list_flavors(
    *,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None,
    project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """List the flavors."""
    with connected(endpoint, token_file, project, state_dir) as client:
        flavors = client.list_flavors()
        if json_output:
            output.print_json([flavor.wire() for flavor in flavors])
            return
        output.print_table(output.flavors_table(flavors))
