"""Tenant CLI against a scripted API: option parsing, credentials, passwords, output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from tests.fakes.api import ENDPOINT, PROJECT, TOKEN, FakeApi, fault_response, instance_body
from typer.testing import CliRunner

from reddwarf.cli import tenant
from reddwarf.client import ReddwarfClient

FLAVORS = {"flavors": [{"id": "2", "name": "small", "ram": 1024, "vcpus": 1, "links": []}]}


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(tenant.instance_app, name="instance")
    app.add_typer(tenant.datastore_app, name="datastore")
    app.add_typer(tenant.flavor_app, name="flavor")
    return app


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    """Every client the CLI builds talks to this scripted API; the environment holds the credentials."""
    fake = FakeApi(handler=lambda request: fault_response(404, "itemNotFound", "nothing here"))

    def make_client(endpoint: str, token: Any, project_id: str) -> ReddwarfClient:
        return ReddwarfClient(endpoint, token, project_id, transport=httpx.MockTransport(fake))

    monkeypatch.setattr(tenant, "ReddwarfClient", make_client)
    monkeypatch.setenv("REDDWARF_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("REDDWARF_TOKEN", TOKEN)
    monkeypatch.setenv("REDDWARF_PROJECT", PROJECT)
    return fake


def _create_handler(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/flavors"):
        return httpx.Response(200, json=FLAVORS)
    return httpx.Response(200, json={"instance": instance_body("i1")})


runner = CliRunner()


@pytest.mark.parametrize(
    ("value", "name", "databases"),
    [
        ("alice", "alice", None),
        ("alice:app,logs", "alice", ("app", "logs")),
        ("alice:app", "alice", ("app",)),
        ("alice:", "alice", ()),
    ],
)
def test_parse_user_option(value: str, name: str, databases: tuple[str, ...] | None) -> None:
    user = tenant.parse_user_option(value)
    assert user.name == name
    assert user.databases == databases


@pytest.mark.parametrize("value", [":app", "", "alice:,", "alice:pw:app", "alice::app"])
def test_parse_user_option_refuses_and_never_echoes_the_password(value: str) -> None:
    with pytest.raises(typer.BadParameter) as caught:
        tenant.parse_user_option(value)
    assert "pw" not in str(caught.value.message).replace("PASSWORD", "")


def test_no_option_takes_a_secret() -> None:
    """Any local user reads /proc/*/cmdline: no tenant command has --token or an inline password."""
    from reddwarf.cli import root

    for name in ("instance", "datastore", "flavor", "database", "user", "root", "backup"):
        group = root.load_command(name)
        for command in group.commands.values():
            options = {opt for param in command.params for opt in param.opts}
            assert "--token" not in options, (name, command.name)
            assert not {opt for opt in options if "password" in opt} - {"--password-stdin", "--password"}
            for param in command.params:
                if "--password" in param.opts:  # `root enable --password`: a flag that asks for it
                    assert param.is_flag, (name, command.name)


def test_token_option_is_gone(api: FakeApi) -> None:
    result = runner.invoke(_app(), ["flavor", "list", "--token", "secret-on-argv"])
    assert result.exit_code == 2
    assert "No such option" in result.output
    assert api.requests == []


def test_token_file_is_read(api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDDWARF_TOKEN")
    (tmp_path / "token").write_text("from-the-file\n")
    api.handler = lambda request: httpx.Response(200, json=FLAVORS)
    result = runner.invoke(_app(), ["flavor", "list", "--token-file", str(tmp_path / "token")])
    assert result.exit_code == 0, result.output
    assert api.requests[-1].headers["X-Auth-Token"] == "from-the-file"


def test_admin_token_and_project_come_from_the_state_dir(tmp_path: Path) -> None:
    (tmp_path / "control").mkdir()
    (tmp_path / "control" / "admin-token").write_text("admin-tok\n")
    (tmp_path / "control" / "admin-project").write_text("admin-proj\n")
    _, token, project = tenant.resolve_connection(ENDPOINT, None, None, tmp_path)
    assert (token.reveal(), project) == ("admin-tok", "admin-proj")


def test_environment_token_wins_over_the_admin_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "control").mkdir()
    (tmp_path / "control" / "admin-token").write_text("admin-tok\n")
    monkeypatch.setenv("REDDWARF_TOKEN", "tenant-tok")
    _, token, project = tenant.resolve_connection(ENDPOINT, None, "p1", tmp_path)
    assert (token.reveal(), project) == ("tenant-tok", "p1")


def test_admin_project_file_is_not_used_with_another_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "control").mkdir()
    (tmp_path / "control" / "admin-token").write_text("admin-tok\n")
    (tmp_path / "control" / "admin-project").write_text("admin-proj\n")
    monkeypatch.setenv("REDDWARF_TOKEN", "tenant-tok")
    with pytest.raises(typer.BadParameter, match="no project"):
        tenant.resolve_connection(ENDPOINT, None, None, tmp_path)


def test_missing_token_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDDWARF_TOKEN", "REDDWARF_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(_app(), ["flavor", "list", "--state-dir", str(tmp_path), "--project", "p"])
    assert result.exit_code == 2
    assert "no token" in result.stderr


def test_api_error_exits_1_with_the_fault(api: FakeApi) -> None:
    api.handler = lambda request: fault_response(404, "itemNotFound", "Instance i9 could not be found.")
    result = runner.invoke(_app(), ["instance", "show", "i9"])
    assert result.exit_code == 1
    assert "Error (404 itemNotFound): Instance i9 could not be found." in result.stderr
    assert result.stdout == ""


def test_unreachable_api_exits_1(api: FakeApi) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    api.handler = refuse
    result = runner.invoke(_app(), ["flavor", "list"])
    assert result.exit_code == 1
    assert f"cannot reach {ENDPOINT}" in result.stderr
    assert TOKEN not in result.output


def test_create_reads_passwords_from_stdin_and_resolves_the_flavor_name(api: FakeApi) -> None:
    api.handler = _create_handler
    args = ["instance", "create", "db1", "--flavor", "small", "--size", "2", "--database", "app"]
    args += ["--database", "logs", "--user", "alice:app", "--user", "bob", "--user", "carol:", "--password-stdin"]
    result = runner.invoke(_app(), [*args, "--json"], input="alice pw\nbob-pw\ncarol-pw\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == "i1"
    create = api.bodies()[-1]["instance"]
    assert create["flavorRef"] == "2"
    assert create["users"] == [
        {"name": "alice", "password": "alice pw", "databases": [{"name": "app"}]},
        {"name": "bob", "password": "bob-pw", "databases": [{"name": "app"}, {"name": "logs"}]},
        {"name": "carol", "password": "carol-pw", "databases": []},
    ]
    assert "alice pw" not in result.output
    assert "bob-pw" not in result.output


def test_create_prompts_for_a_hidden_password(api: FakeApi) -> None:
    api.handler = _create_handler
    args = ["instance", "create", "db1", "--flavor", "2", "--size", "1", "--user", "alice", "--json"]
    result = runner.invoke(_app(), args, input="typed-pw\ntyped-pw\n")
    assert result.exit_code == 0, result.output
    assert api.bodies()[-1]["instance"]["users"][0]["password"] == "typed-pw"
    assert "typed-pw" not in result.output
    assert json.loads(result.stdout)["id"] == "i1"


def test_inline_password_is_refused(api: FakeApi) -> None:
    args = ["instance", "create", "db1", "--flavor", "2", "--size", "1", "--user", "alice:pw1:app"]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 2
    assert "never given on the command line" in result.output
    assert "pw1" not in result.output
    assert api.requests == []


def test_password_stdin_runs_dry(api: FakeApi) -> None:
    api.handler = _create_handler
    args = ["instance", "create", "db1", "--flavor", "2", "--size", "1", "--user", "alice"]
    result = runner.invoke(_app(), [*args, "--password-stdin"], input="")
    assert result.exit_code == 2
    assert "no password for user alice" in result.stderr


def test_wait_exits_1_with_the_fault_message(api: FakeApi) -> None:
    fault = {"message": "initdb failed: disk full", "details": "", "created": "2026-11-22T11:33:00"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"instance": instance_body("i1")})
        if request.url.path.endswith("/flavors"):
            return httpx.Response(200, json=FLAVORS)
        return httpx.Response(200, json={"instance": instance_body("i1", "ERROR", fault=fault)})

    api.handler = handler
    result = runner.invoke(_app(), ["instance", "create", "db1", "--flavor", "2", "--size", "1", "--wait"])
    assert result.exit_code == 1
    assert "initdb failed: disk full" in result.stderr


def test_size_must_be_positive(api: FakeApi) -> None:
    result = runner.invoke(_app(), ["instance", "create", "db1", "--flavor", "2", "--size", "0"])
    assert result.exit_code == 2
    assert api.requests == []


def test_list_tables_show_every_instance(api: FakeApi) -> None:
    ids = ["6f1d2c7a-0000-4000-8000-00000000000" + str(n) for n in range(3)]
    api.handler = lambda request: httpx.Response(200, json={"instances": [instance_body(i, "ACTIVE") for i in ids]})
    result = runner.invoke(_app(), ["instance", "list"])
    assert result.exit_code == 0, result.output
    for instance_id in ids:
        assert instance_id in result.stdout
