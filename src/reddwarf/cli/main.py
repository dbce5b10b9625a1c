"""The root of the `reddwarf` command."""

from __future__ import annotations

import typer

from reddwarf.cli import accounts, openstack, operator, tenant

app = typer.Typer(
    name="reddwarf",
    help="Reddwarf: Database-as-a-Service. Operator commands run the control plane; tenant commands talk to its API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("server")(operator.server)
app.command("worker")(operator.worker)
app.add_typer(operator.db_app, name="db")
app.add_typer(operator.project_app, name="project")
app.add_typer(operator.token_app, name="token")
app.add_typer(operator.engines_app, name="engines")
app.add_typer(openstack.app, name="openstack")
app.add_typer(tenant.instance_app, name="instance")
app.add_typer(tenant.datastore_app, name="datastore")
app.add_typer(tenant.flavor_app, name="flavor")
app.add_typer(accounts.database_app, name="database")
app.add_typer(accounts.user_app, name="user")
app.add_typer(accounts.root_app, name="root")


def main() -> None:
    app()
