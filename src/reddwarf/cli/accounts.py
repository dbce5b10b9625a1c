"""The tenant commands for what lives inside an instance: `database`, `user` and `root` (Typer sub-apps).

They go through `reddwarf.client` only, like `cli/tenant.py`, whose connection options and `--json` they
share. Passwords are prompted for (hidden, confirmed) or read from stdin with `--password-stdin`, never
taken from the command line. Writes are accepted at once (202); `--wait` polls until the change is
visible. `cli/root.py` mounts `database_app`, `user_app` and `root_app`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from reddwarf.cli import output
from reddwarf.cli.tenant import (
    DEFAULT_ENDPOINT,
    DEFAULT_STATE_DIR,
    EndpointOption,
    JsonOption,
    ProjectOption,
    StateDirOption,
    TokenFileOption,
    resolve_connection,
)
from reddwarf.client import ReddwarfAPIError, ReddwarfClient, ReddwarfConnectionError, WaitTimeout
from reddwarf.client.accounts import AccountsClient
from reddwarf.domain.secret import Secret

database_app = typer.Typer(name="database", help="List, create and drop databases inside an instance.",
                           no_args_is_help=True)
user_app = typer.Typer(name="user", help="Manage the users of an instance and their database access.",
                       no_args_is_help=True)
root_app = typer.Typer(name="root", help="Enable, disable and show the superuser of an instance.", no_args_is_help=True)

InstanceArg = Annotated[str, typer.Argument(metavar="INSTANCE", help="Instance id.")]
UserArg = Annotated[str, typer.Argument(metavar="USER", help="User name.")]
HostOption = Annotated[str | None, typer.Option("--host", help="The user's host (MariaDB); default: any (%).")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
]
WaitOption = Annotated[bool, typer.Option("--wait", help="Wait until the change is visible.")]
WaitTimeoutOption = Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds --wait waits.")]
DEFAULT_TIMEOUT = 60.0


@contextmanager
def _accounts(
    endpoint: str, token_file: Path | None, project: str | None, state_dir: Path
) -> Iterator[AccountsClient]:
    endpoint, secret, project = resolve_connection(endpoint, token_file, project, state_dir)
    try:
        client = ReddwarfClient(endpoint, secret, project)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--endpoint") from exc
    with client:
        try:
            yield client.accounts
        except ReddwarfAPIError as exc:
            output.print_error(f"Error ({exc.status} {exc.fault_name}): {exc.message}")
            raise typer.Exit(1) from exc
        except (ReddwarfConnectionError, WaitTimeout) as exc:
            output.print_error(f"Error: {exc}")
            raise typer.Exit(1) from exc


def _password(label: str, from_stdin: bool) -> Secret:
    if from_stdin:
        line = typer.get_text_stream("stdin").readline().rstrip("\r\n")
        if not line:
            raise typer.BadParameter("no password on stdin", param_hint="--password-stdin")
        return Secret(line)
    typed: str = typer.prompt(f"Password for {label}", hide_input=True, confirmation_prompt=True, err=True)
    if not typed:
        raise typer.BadParameter("the password must not be empty")
    return Secret(typed)


def _done(json_output: bool, message: str, **fields: object) -> None:
    if json_output:
        output.print_json({"accepted": True, **fields})
    else:
        output.print_message(message)


# -- database -----------------------------------------------------------------------------------------


@database_app.command("list")
def list_databases(
    instance: InstanceArg, *, endpoint: EndpointOption = DEFAULT_ENDPOINT, token_file: TokenFileOption = None,
    project: ProjectOption = None, state_dir: StateDirOption = DEFAULT_STATE_DIR, json_output: JsonOption = False,
) -> None:
    """List the databases of an instance."""
    with _accounts(endpoint, token_file, project, state_dir) as accounts:
        databases = accounts.list_databases(instance)
    if json_output:
        output.print_json([d.model_dump(mode="json", exclude_none=True) for d in databases])
        return
    for database in databases:
        output.print_message(database.name)


@database_app.command("create")
def create_databases(
    instance: InstanceArg,
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="Databases to create.")],
    *,
    character_set: Annotated[str | None, typer.Option("--character-set", help="Character set.")] = None,
    collate: Annotated[str | None, typer.Option("--collate", help="Collation.")] = None,
    wait: WaitOption = False, timeout: WaitTimeoutOption = DEFAULT_TIMEOUT,
    endpoint: EndpointOption = DEFAULT_ENDPOINT, token_file: TokenFileOption = None, project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR, json_output: JsonOption = False,
) -> None:
    """Create databases in an instance."""
    with _accounts(endpoint, token_file, project, state_dir) as accounts:
        accounts.create_databases(instance, names, character_set=character_set, collate=collate)
        if wait:
            accounts.wait_for(f"databases {', '.join(names)}", lambda: set(names) <= {
                d.name for d in accounts.list_databases(instance)}, timeout)
    _done(json_output, f"Create of database(s) {', '.join(names)} accepted.", instance=instance, databases=names)


@database_app.command("delete")
def delete_database(
    instance: InstanceArg, name: Annotated[str, typer.Argument(metavar="NAME", help="Database to drop.")], *,
    wait: WaitOption = False, timeout: WaitTimeoutOption = DEFAULT_TIMEOUT,
    endpoint: EndpointOption = DEFAULT_ENDPOINT, token_file: TokenFileOption = None, project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR, json_output: JsonOption = False,
) -> None:
    """Drop a database and its data."""
    with _accounts(endpoint, token_file, project, state_dir) as accounts:
        accounts.delete_database(instance, name)
        if wait:
            accounts.wait_for(f"the drop of {name}",
                              lambda: name not in {d.name for d in accounts.list_databases(instance)}, timeout)
    _done(json_output, f"Drop of database {name} accepted.", instance=instance, database=name)


# -- user ---------------------------------------------------------------------------------------------


@user_app.command("list")
def list_users(
    instance: InstanceArg, *, endpoint: EndpointOption = DEFAULT_ENDPOINT, token_file: TokenFileOption = None,
    project: ProjectOption = None, state_dir: StateDirOption = DEFAULT_STATE_DIR, json_output: JsonOption = False,
) -> None:
    """List the users of an instance with their host and databases."""
    with _accounts(endpoint, token_file, project, state_dir) as accounts:
        users = accounts.list_users(instance)
    if json_output:
        output.print_json([u.wire() for u in users])
        return
    for user in users:
        databases = ", ".join(d.name for d in user.databases)
        output.print_message(f"{user.name}@{user.host}" + (f"  ({databases})" if databases else ""))


@user_app.command("show")
def show_user(
    instance: InstanceArg, name: UserArg, *, host: HostOption = None,
    endpoint: EndpointOption = DEFAULT_ENDPOINT, token_file: TokenFileOption = None, project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR, json_output: JsonOption = False,
) -> None:
    """Show one user."""
    with _accounts(endpoint, token_file, project, state_dir) as accounts:
        user = accounts.get_user(instance, name, host)
    if json_output:
        output.print_json(user.wire())
        return
    output.print_message(f"{user.name}@{user.host}: {', '.join(d.name for d in user.databases) or '(no databases)'}")


@user_app.command("create")
def create_user(
    instance: InstanceArg, name: UserArg, *, host: HostOption = None,
    database: Annotated[list[str] | None, typer.Option("--database", help="Grant access to it; repeat.")] = None,
    password_stdin: PasswordStdin = False, wait: WaitOption = False, timeout: WaitTimeoutOption = DEFAULT_TIMEOUT,
    endpoint: EndpointOption = DEFAULT_ENDPOINT, token_file: TokenFileOption = None, project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR, json_output: JsonOption = False,
) -> None:
    """Create a user (the password is prompted for, or read with --password-stdin)."""
    password = _password(f"user {name}", password_stdin)
    with _accounts(endpoint, token_file, project, state_dir) as accounts:
        accounts.create_user(instance, name, password, host=host, databases=database or ())
        if wait:
            accounts.wait_for(f"user {name}", lambda: any(
                u.name == name and u.host == (host or "%") for u in accounts.list_users(instance)), timeout)
    _done(json_output, f"Create of user {name} accepted.", instance=instance, user=name)


@user_app.command("password")
def change_password(
    instance: InstanceArg, name: UserArg, *, host: HostOption = None, password_stdin: PasswordStdin = False,
    endpoint: EndpointOption = DEFAULT_ENDPOINT, token_file: TokenFileOption = None, project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR, json_output: JsonOption = False,
) -> None:
    """Set a user's password."""
    password = _password(f"user {name}", password_stdin)
    with _accounts(endpoint, token_file, project, state_dir) as accounts:
        accounts.update_user(instance, name, host, password=password)
    _done(json_output, f"Password change of user {name} accepted.", instance=instance, user=name)


@user_app.command("delete")
def delete_user(
    instance: InstanceArg, name: UserArg, *, host: HostOption = None, wait: WaitOption = False,
    timeout: WaitTimeoutOption = DEFAULT_TIMEOUT, endpoint: EndpointOption = DEFAULT_ENDPOINT,
    token_file: TokenFileOption = None, project: ProjectOption = None, state_dir: StateDirOption = DEFAULT_STATE_DIR,
    json_output: JsonOption = False,
) -> None:
    """Drop a user."""
    with _accounts(endpoint, token_file, project, state_dir) as accounts:
        accounts.delete_user(instance, name, host)
        if wait:
            accounts.wait_for(f"the drop of user {name}", lambda: not any(
                u.name == name and u.host == (host or "%") for u in accounts.list_users(instance)), timeout)
    _done(json_output, f"Drop of user {name} accepted.", instance=instance, user=name)


@user_app.command("grant")
def grant(
    instance: InstanceArg, name: UserArg,
    databases: Annotated[list[str], typer.Argument(metavar="DATABASE...", help="Databases to grant.")], *,
    host: HostOption = None, endpoint: EndpointOption = DEFAULT_ENDPOINT, token_file: TokenFileOption = None,
    project: ProjectOption = None, state_dir: StateDirOption = DEFAULT_STATE_DIR, json_output: JsonOption = False,
) -> None:
    """Give a user access to databases."""
    with _accounts(endpoint, token_file, project, state_dir) as accounts:
        accounts.grant(instance, name, databases, host)
    _done(json_output, f"Grant of {', '.join(databases)} to {name} accepted.", instance=instance, user=name)


@user_app.command("revoke")
def revoke(
    instance: InstanceArg, name: UserArg,
    database: Annotated[str, typer.Argument(metavar="DATABASE", help="Database to revoke.")], *,
    host: HostOption = None, endpoint: EndpointOption = DEFAULT_ENDPOINT, token_file: TokenFileOption = None,
    project: ProjectOption = None, state_dir: StateDirOption = DEFAULT_STATE_DIR, json_output: JsonOption = False,
) -> None:
    """Take a user's access to a database away."""
    with _accounts(endpoint, token_file, project, state_dir) as accounts:
        accounts.revoke(instance, name, database, host)
    _done(json_output, f"Revoke of {database} from {name} accepted.", instance=instance, user=name)


# -- root ---------------------------------------------------------------------------------------------


@root_app.command("status")
def root_status(
    instance: InstanceArg, *, endpoint: EndpointOption = DEFAULT_ENDPOINT, token_file: TokenFileOption = None,
    project: ProjectOption = None, state_dir: StateDirOption = DEFAULT_STATE_DIR, json_output: JsonOption = False,
) -> None:
    """Is root enabled?"""
    with _accounts(endpoint, token_file, project, state_dir) as accounts:
        enabled = accounts.root_enabled(instance)
    if json_output:
        output.print_json({"rootEnabled": enabled})
    else:
        output.print_message("Root is enabled." if enabled else "Root is not enabled.")


@root_app.command("enable")
def enable_root(
    instance: InstanceArg, *,
    choose: Annotated[bool, typer.Option("--password", help="Choose the password (prompted) instead of a "
                                         "generated one.")] = False,
    password_stdin: PasswordStdin = False,
    endpoint: EndpointOption = DEFAULT_ENDPOINT, token_file: TokenFileOption = None, project: ProjectOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR, json_output: JsonOption = False,
) -> None:
    """Enable root; prints the superuser's name and password (shown this once)."""
    password = _password("root", password_stdin) if choose or password_stdin else None
    with _accounts(endpoint, token_file, project, state_dir) as accounts:
        credential = accounts.enable_root(instance, password)
    if json_output:
        output.print_json({"name": credential.name, "password": credential.password.reveal()})
    else:
        output.print_message(f"name: {credential.name}\npassword: {credential.password.reveal()}")


@root_app.command("disable")
def disable_root(
    instance: InstanceArg, *, endpoint: EndpointOption = DEFAULT_ENDPOINT, token_file: TokenFileOption = None,
    project: ProjectOption = None, state_dir: StateDirOption = DEFAULT_STATE_DIR, json_output: JsonOption = False,
) -> None:
    """Disable root."""
    with _accounts(endpoint, token_file, project, state_dir) as accounts:
        accounts.disable_root(instance)
    _done(json_output, "Root disabled.", instance=instance)
