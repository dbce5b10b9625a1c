"""The root group of the `reddwarf` command (`main.py` is the entry point): every sub-command is imported
only when it runs.

Tenant commands (`instance`, `datastore`, `flavor` in `tenant.py`; `database`, `user`, `root` in
`accounts.py`; `backup` in `backups.py`) import Typer, Rich, httpx and `reddwarf.client`. Operator commands
(`server`, `worker`, `db`, `project`, `token`, `engines` in `operator.py`; `openstack` in `openstack.py`)
import the whole control plane (SQLAlchemy, FastAPI, the engines), about a second of imports. `LazyGroup`
imports a command's module, and turns its Typer app into click commands, only when that command is resolved to
run; `reddwarf --help` lists them all from the help lines written here (a unit test keeps them equal to the
commands' own). A tenant command thus starts in the time of its own imports (bench/cli_startup.py).
"""

from __future__ import annotations

import gc
import importlib
from dataclasses import dataclass
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

TENANT_PANEL = "Tenant commands (through the HTTP API)"
OPERATOR_PANEL = "Operator commands (run where the control plane runs)"


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """Where a sub-command lives (a Typer app, or a function for a single command) and its help line."""

    module: str
    attribute: str
    help: str
    panel: str


_TENANT = "reddwarf.cli.tenant"
_ACCOUNTS = "reddwarf.cli.accounts"
_OPERATOR = "reddwarf.cli.operator"

COMMANDS: dict[str, LazyCommand] = {
    "instance": LazyCommand(_TENANT, "instance_app",
                            "Create, list, show, restart and delete database instances.", TENANT_PANEL),
    "datastore": LazyCommand(_TENANT, "datastore_app", "List the datastores and versions on offer.", TENANT_PANEL),
    "flavor": LazyCommand(_TENANT, "flavor_app", "List the flavors (RAM and vCPUs) on offer.", TENANT_PANEL),
    "database": LazyCommand(_ACCOUNTS, "database_app",
                            "List, create and drop databases inside an instance.", TENANT_PANEL),
    "user": LazyCommand(_ACCOUNTS, "user_app",
                        "Manage the users of an instance and their database access.", TENANT_PANEL),
    "root": LazyCommand(_ACCOUNTS, "root_app", "Enable, disable and show the superuser of an instance.",
                        TENANT_PANEL),
    "backup": LazyCommand("reddwarf.cli.backups", "backup_app", "Create, list, show and delete backups of instances.",
                          TENANT_PANEL),
    "snapshot": LazyCommand("reddwarf.cli.snapshots", "snapshot_app",
                            "Take, list, show and delete snapshots of instances.", TENANT_PANEL),
    "server": LazyCommand(_OPERATOR, "server",
                          "Run the API with embedded workers on the embedded defaults (SQLite, local runtime).",
                          OPERATOR_PANEL),
    "worker": LazyCommand(_OPERATOR, "worker", "Run workers only (next to `reddwarf server`, sharing its store).",
                          OPERATOR_PANEL),
    "db": LazyCommand(_OPERATOR, "db_app", "The metadata store.", OPERATOR_PANEL),
    "project": LazyCommand(_OPERATOR, "project_app", "Projects (tenants) of the built-in identity.", OPERATOR_PANEL),
    "token": LazyCommand(_OPERATOR, "token_app", "API tokens of the built-in identity.", OPERATOR_PANEL),
    "engines": LazyCommand(_OPERATOR, "engines_app", "Database engine software on this host.", OPERATOR_PANEL),
    "openstack": LazyCommand("reddwarf.cli.openstack", "app", "OpenStack mode: Keystone's service catalog.",
                             OPERATOR_PANEL),
}


class _Placeholder(TyperCommand):
    """What `--help` lists for a sub-command that has not been imported."""

    def __init__(self, name: str, lazy: LazyCommand) -> None:
        super().__init__(name, help=lazy.help, short_help=lazy.help, rich_help_panel=lazy.panel)


def load_command(name: str) -> Any:
    """Import a sub-command's module and turn its Typer app (or function) into the click command that
    mounting it on the root app would have made."""
    lazy = COMMANDS[name]
    target: Any = getattr(importlib.import_module(lazy.module), lazy.attribute)
    parent = typer.Typer()
    parent.callback()(_root_callback)
    if isinstance(target, typer.Typer):
        parent.add_typer(target, name=name, rich_help_panel=lazy.panel)
    else:
        parent.command(name, rich_help_panel=lazy.panel)(target)
    group = typer.main.get_command(parent)
    assert isinstance(group, TyperGroup)
    return group.commands[name]


def _root_callback() -> None:
    """A callback makes the wrapper a group, so its one sub-command keeps its own name and shape."""


class LazyGroup(TyperGroup):
    """The root group: sub-commands are placeholders until one is resolved to run."""

    # Typer's click types are private (`typer._click`): the signatures below take and return them as Any.

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(name for name in COMMANDS if name not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in COMMANDS:
            return _Placeholder(cmd_name, COMMANDS[cmd_name])
        return found

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None and isinstance(command, _Placeholder):
            command = load_command(name)
            self.commands[name] = command
        if not gc.isenabled():
            # `main.main` turned the cyclic collector off for the imports (many new objects, no garbage):
            # what they made is frozen out of its sight, and it runs as usual for the command itself.
            gc.freeze()
            gc.enable()
        return name, command, rest


app = typer.Typer(
    name="reddwarf",
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _reddwarf() -> None:
    """Reddwarf: Database-as-a-Service. Operator commands run the control plane; tenant commands talk to its API."""
