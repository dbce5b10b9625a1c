"""Request bodies against the real API over TCP (uvicorn): bounded, and never read before authentication.

A raw socket plays the client, so that the test sees when the answer arrives relative to what it has sent:
a body over the limit (1 MiB by default) is refused with 413 before the client has finished sending it, an
anonymous request is refused with 401 without its body being read, and links never echo the Host header.
"""

from __future__ import annotations

import json
import select
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from client_server import ApiServer

LIMIT = 1024 * 1024
HUGE = 8 * LIMIT
CHUNK = 64 * 1024
DEADLINE = 15.0


def _connect(server: ApiServer) -> socket.socket:
    url = urlsplit(server.endpoint)
    sock = socket.create_connection((url.hostname, url.port), timeout=DEADLINE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _head(server: ApiServer, path: str, token: str | None, extra: str) -> bytes:
    host = urlsplit(server.endpoint).netloc
    lines = [f"POST /v1.0/{server.admin_project}{path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    if token is not None:
        lines.append(f"X-Auth-Token: {token}")
    return ("\r\n".join([*lines, extra]) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """One HTTP/1.1 response with a Content-Length body (what the API sends)."""
    data = b""
    deadline = time.monotonic() + DEADLINE
    while b"\r\n\r\n" not in data:
        assert time.monotonic() < deadline, "no response"
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the response body"
        body += chunk
    return int(status_line.split()[1]), headers, json.loads(body)


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def test_an_announced_oversized_body_is_refused_before_it_is_sent(api_server: ApiServer) -> None:
    with _connect(api_server) as sock:
        # Headers only: the answer must come while the client still holds back all of the 8 MiB it announced.
        sock.sendall(_head(api_server, "/instances", api_server.admin_token, f"Content-Length: {HUGE}"))
        status, headers, body = _read_response(sock)
    assert status == 413
    assert body == {"overLimit": {"code": 413, "message": f"Request body too large: the limit is {LIMIT} bytes."}}
    assert headers["connection"] == "close"
    assert headers["x-openstack-request-id"].startswith("req-")


def test_a_streamed_oversized_body_is_cut_off_with_413_before_it_ends(api_server: ApiServer) -> None:
    """Chunked: no length announced, so the server counts what arrives and answers once it passes the limit."""
    sent = 0
    response = None
    with _connect(api_server) as sock:
        sock.sendall(_head(api_server, "/instances", api_server.admin_token, "Transfer-Encoding: chunked"))
        payload = b'{"instance": {"name": "' + b"a" * (CHUNK - 23)
        while sent < HUGE:
            if _readable(sock):
                response = _read_response(sock)
                break
            sock.sendall(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
            sent += len(payload)
            payload = b"a" * CHUNK
        if response is None:  # everything sent: the answer still has to be the 413
            response = _read_response(sock)
    status, _, body = response
    assert status == 413, body
    assert body["overLimit"]["code"] == 413
    assert LIMIT < sent < HUGE, f"the 413 arrived after {sent} bytes of {HUGE}"


def test_an_anonymous_request_is_refused_without_its_body_being_read(api_server: ApiServer) -> None:
    """401 answers while the client still holds back the whole body it announced (under the limit, so only
    authentication can refuse it): the server did not wait for, read or parse it."""
    for token in (None, "not-a-token"):
        with _connect(api_server) as sock:
            sock.sendall(_head(api_server, "/instances", token, f"Content-Length: {LIMIT // 2}"))
            status, headers, body = _read_response(sock)
        assert status == 401, body
        assert "unauthorized" in body
        assert headers["connection"] == "close"


def test_an_anonymous_huge_body_is_401_not_413(api_server: ApiServer) -> None:
    with _connect(api_server) as sock:
        sock.sendall(_head(api_server, "/instances/i1/databases", None, f"Content-Length: {HUGE}"))
        status, _, body = _read_response(sock)
    assert status == 401, body


def test_another_projects_path_is_403_before_the_body(api_server: ApiServer) -> None:
    with _connect(api_server) as sock:
        head = _head(api_server, "/instances", api_server.admin_token, f"Content-Length: {LIMIT // 2}")
        sock.sendall(head.replace(api_server.admin_project.encode(), b"someone-else", 1))
        status, _, body = _read_response(sock)
    assert status == 403, body


def test_a_body_within_the_limit_still_works(api_server: ApiServer) -> None:
    body = {"instance": {"name": "x" * 100, "flavorRef": "1", "volume": {"size": 1},
                        "datastore": {"type": "postgresql", "version": "15"}}}
    with httpx.Client(base_url=f"{api_server.endpoint}/v1.0/{api_server.admin_project}",
                      headers={"X-Auth-Token": api_server.admin_token}) as client:
        response = client.post("/instances", json=body)
    assert response.status_code == 200, response.text


def test_list_fields_have_maximum_lengths(api_server: ApiServer) -> None:
    users = [{"name": f"u{n}", "password": "pw", "databases": [{"name": "d"}]} for n in range(101)]
    base = {"name": "big", "flavorRef": "1", "volume": {"size": 1}}
    with httpx.Client(base_url=f"{api_server.endpoint}/v1.0/{api_server.admin_project}",
                      headers={"X-Auth-Token": api_server.admin_token}) as client:
        too_many_users = client.post("/instances", json={"instance": {**base, "users": users}})
        too_many_grants = client.post("/instances", json={"instance": {**base, "users": [
            {"name": "u", "password": "pw", "databases": [{"name": f"d{n}"} for n in range(101)]}]}})
        too_many_databases = client.post("/instances/i1/databases",
                                         json={"databases": [{"name": f"d{n}"} for n in range(101)]})
    assert too_many_users.status_code == 400
    assert too_many_users.json()["badRequest"]["message"] == (
        "Validation error: instance.users must have at most 100 item(s).")
    assert too_many_grants.status_code == 400
    message = too_many_grants.json()["badRequest"]["message"]
    assert "instance.users[0].databases must have at most 100 item(s)" in message
    assert too_many_databases.status_code == 400
    assert "databases must have at most 100 item(s)" in too_many_databases.json()["badRequest"]["message"]


def test_links_never_use_the_host_header(api_server: ApiServer) -> None:
    """Without public_url, links use the address the connection arrived at, whatever Host the client sent."""
    with httpx.Client(base_url=api_server.endpoint, headers={"X-Auth-Token": api_server.admin_token,
                                                             "Host": "evil.example"}) as client:
        project = f"/v1.0/{api_server.admin_project}"
        created = client.post(f"{project}/instances", json={"instance": {
            "name": "linked", "flavorRef": "1", "volume": {"size": 1}}})
        assert created.status_code == 200, created.text
        answers = [client.get("/"), client.get("/v1.0/"), created, client.get(f"{project}/flavors"),
                   client.get(f"{project}/instances/{created.json()['instance']['id']}"),
                   client.get(f"{project}/instances", params={"limit": 1})]
    own = api_server.endpoint
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert "evil.example" not in answer.text
        assert own in answer.text, answer.text
