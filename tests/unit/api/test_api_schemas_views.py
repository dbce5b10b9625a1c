"""Create-body parsing (Trove's flexible fields) and the instance view (summary vs detail), without I/O."""

from __future__ import annotations

from reddwarf.api.schemas.v1.instances import InstanceCreateBody, InstanceUpdateBody
from reddwarf.api.views import instance_view, isotime
from reddwarf.domain.instance import Endpoint, Instance, InstanceSpec
from reddwarf.domain.status import Fault, InstanceStatus


def _parse(**fields: object) -> InstanceCreateBody:
    return InstanceCreateBody.model_validate({"instance": {"name": "a", "flavorRef": "1", **fields}})


def test_flavor_ref_accepts_an_integer_or_an_href() -> None:
    assert _parse(flavorRef=3).instance.to_request().flavor_ref == "3"
    assert _parse(flavorRef="https://x/v1.0/p/flavors/7/").instance.to_request().flavor_ref == "7"


def test_volume_size_accepts_a_digit_string_as_trove_does() -> None:
    assert _parse(volume={"size": "4"}).instance.to_request().volume_size == 4


def test_users_passwords_become_secrets_and_hosts_default_to_any() -> None:
    request = _parse(users=[{"name": "u", "password": "pw", "databases": [{"name": "d"}]}]).instance.to_request()

    (user,) = request.users
    assert user.password.reveal() == "pw" and "pw" not in repr(user)
    assert user.host == "%" and user.databases == ("d",)


def test_unsupported_fields_are_carried_for_the_service_to_refuse() -> None:
    request = _parse(restorePoint={"backupRef": "b"}, modules=[{"id": "m"}]).instance.to_request()

    assert request.restore_point == "b" and request.modules == ("m",)


def test_update_reports_attributes_other_than_name() -> None:
    body = InstanceUpdateBody.model_validate({"instance": {"name": "n", "configuration": None}})

    assert body.instance.unsupported_fields() == ["configuration"]


def _instance() -> Instance:
    spec = InstanceSpec(name="db", flavor_id="2", volume_size_gb=3, datastore="postgresql", datastore_version="16")
    return Instance(
        id="i1", project_id="p1", spec=spec, status=InstanceStatus.ACTIVE, created=0.0, updated=60.0,
        endpoint=Endpoint("127.0.1.2", 5432), fault=Fault("m", "d", 0.0), volume_used_bytes=1024**3,
    )


def test_summary_view_omits_detail_fields() -> None:
    view = instance_view(_instance(), base="http://h", version_number="16.4", region="R", detail=False,
                         is_admin=False)

    assert view["datastore"] == {"type": "postgresql", "version": "16"}
    assert view["volume"] == {"size": 3}
    assert not {"created", "updated", "fault", "tenant_id"} & set(view)
    assert view["flavor"] == {"id": "2", "links": [
        {"href": "http://h/v1.0/p1/flavors/2", "rel": "self"}, {"href": "http://h/flavors/2", "rel": "bookmark"}
    ]}


def test_detail_view_for_an_admin() -> None:
    view = instance_view(_instance(), base="http://h", version_number="16.4", region="R", detail=True,
                         is_admin=True)

    assert view["datastore"]["version_number"] == "16.4"
    assert view["volume"] == {"size": 3, "used": 1.0}
    assert view["updated"] == "1970-01-01T00:01:00"
    assert view["fault"] == {"message": "m", "created": "1970-01-01T00:00:00", "details": "d"}
    assert view["tenant_id"] == "p1"
    assert view["region"] == "R"
    assert view["ip"] == ["127.0.1.2"] and view["port"] == 5432


def test_isotime_is_utc_without_zone() -> None:
    assert isotime(1_795_000_000.0) == "2026-11-18T11:06:40"
