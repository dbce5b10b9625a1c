"""`reddwarf openstack ...`: run Reddwarf as an OpenStack service (`cli/root.py` mounts `app`).

`register --public-url URL` puts Reddwarf in Keystone's service catalog (service type `database`, name
from `REDDWARF_KEYSTONE_SERVICE_NAME`, endpoints `URL/v1.0/$(project_id)s` for the public, internal and
admin interfaces in `REDDWARF_REGION_NAME`), idempotently. It authenticates as a Keystone admin given by
options or the standard `OS_*` variables; the password is read from `OS_PASSWORD` or prompted for, never
taken on the command line (any local user can read another's argv).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from reddwarf.domain.secret import Secret
from reddwarf.identity.keystone.catalog import INTERFACES, endpoint_url, register
from reddwarf.identity.keystone.client import KeystoneClient, KeystoneError
from reddwarf.identity.keystone.settings import KeystoneConfigError, KeystoneSettings, PasswordCredentials, v3_url
from reddwarf.settings import Settings

log = logging.getLogger(__name__)
err = Console(stderr=True)
out = Console()

app = typer.Typer(help="OpenStack mode: Keystone's service catalog.", no_args_is_help=True)


@app.callback()
def openstack() -> None:
    """Run Reddwarf as an OpenStack service (see docs/openstack.md)."""


@app.command("register")
def register_command(
    public_url: Annotated[str, typer.Option("--public-url", help="Reddwarf's API as clients reach it, e.g. https://db.example.com:8779.")],
    auth_url: Annotated[str, typer.Option("--os-auth-url", envvar="OS_AUTH_URL", help="Keystone's URL.")],
    username: Annotated[str, typer.Option("--os-username", envvar="OS_USERNAME", help="A Keystone admin.")] = "admin",
    project_name: Annotated[str, typer.Option("--os-project-name", envvar="OS_PROJECT_NAME")] = "admin",
    user_domain_name: Annotated[str, typer.Option("--os-user-domain-name", envvar="OS_USER_DOMAIN_NAME")] = "Default",
    project_domain_name: Annotated[
        str, typer.Option("--os-project-domain-name", envvar="OS_PROJECT_DOMAIN_NAME")
    ] = "Default",
    region: Annotated[str | None, typer.Option(help="Region of the endpoints (default REDDWARF_REGION_NAME).")] = None,
    service_name: Annotated[
        str | None, typer.Option(help="Service name, e.g. trove (default REDDWARF_KEYSTONE_SERVICE_NAME, reddwarf).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Create (or fix) the `database` service and its endpoints in Keystone's catalog; safe to run again."""
    password = _password()
    keystone = KeystoneSettings()
    service = service_name or keystone.service_name
    region_name = region or Settings().region_name
    credentials = PasswordCredentials(
        username=username,
        password=password,
        user_domain_name=user_domain_name,
        project_name=project_name,
        project_domain_name=project_domain_name,
    )
    client = KeystoneClient(v3_url(auth_url), credentials, timeout=keystone.timeout, verify=keystone.verify)
    try:
        changes = register(
            client, public_url=public_url, region=region_name, service_name=service,
            service_type=keystone.service_type, interfaces=INTERFACES,
        )
    except (KeystoneError, KeystoneConfigError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    finally:
        client.close()
    if as_json:
        out.print_json(json.dumps([
            {"kind": c.kind, "id": c.ident, "action": c.action, "detail": c.detail} for c in changes
        ]))
        return
    table = Table("kind", "id", "action", "detail")
    for change in changes:
        table.add_row(change.kind, change.ident, change.action, change.detail)
    out.print(table)
    err.print(f"Clients find Reddwarf at {endpoint_url(public_url)} (service {service}, region {region_name}).")


def _password() -> Secret:
    """`OS_PASSWORD`, else a hidden prompt (or a line on stdin); never an option, argv is world-readable."""
    value = os.environ.get("OS_PASSWORD") or typer.prompt("Keystone admin password (OS_PASSWORD)", hide_input=True)
    return Secret(str(value))
