"""Trove fault bodies become ReddwarfAPIError with status, fault name and message."""

from __future__ import annotations

import httpx

from reddwarf.client.errors import fault_from_response


def test_trove_fault_body_gives_status_name_and_message() -> None:
    response = httpx.Response(
        404,
        json={"itemNotFound": {"code": 404, "message": "Instance abc could not be found."}},
        headers={"X-OpenStack-Request-Id": "req-1"},
    )
    error = fault_from_response(response)
    assert (error.status, error.fault_name, error.message) == (
        404,
        "itemNotFound",
        "Instance abc could not be found.",
    )
    assert error.request_id == "req-1"


def test_unprocessable_entity_fault() -> None:
    body = {"unprocessableEntity": {"code": 422, "message": "Instance is not ACTIVE."}}
    error = fault_from_response(httpx.Response(422, json=body))
    assert error.fault_name == "unprocessableEntity"
    assert error.message == "Instance is not ACTIVE."


def test_non_json_body_falls_back_to_reason_and_text() -> None:
    error = fault_from_response(httpx.Response(502, text="<html>\n  Bad   gateway\n</html>"))
    assert error.status == 502
    assert error.fault_name == "Bad Gateway"
    assert error.message == "<html> Bad gateway </html>"


def test_empty_body_uses_the_reason_phrase() -> None:
    error = fault_from_response(httpx.Response(503))
    assert (error.fault_name, error.message) == ("Service Unavailable", "Service Unavailable")


def test_framework_detail_body_keeps_its_message() -> None:
    error = fault_from_response(httpx.Response(405, json={"detail": "Method Not Allowed"}))
    assert error.fault_name == "Method Not Allowed"
    assert error.message == "Method Not Allowed"


def test_json_that_is_not_a_fault_does_not_crash() -> None:
    error = fault_from_response(httpx.Response(500, json=["unexpected"]))
    assert error.status == 500
    assert error.message == "Internal Server Error"
