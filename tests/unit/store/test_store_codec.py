"""The JSON form of an instance spec never carries a password, and reads back to the same spec."""

from __future__ import annotations

import json

from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.status import Condition, ConditionType
from reddwarf.store.codec import conditions_from_json, conditions_to_json, spec_from_json, spec_to_json

SPEC = InstanceSpec(
    name="orders",
    flavor_id="2",
    volume_size_gb=5,
    datastore="mariadb",
    datastore_version="10.11",
    databases=(DatabaseSpec("shop", character_set="utf8mb4", collate="utf8mb4_bin"),),
    users=(UserSpec("app", Secret("hunter2-very-secret"), host="10.%", databases=("shop",)),),
    availability_zone="az1",
    region_name="r1",
)


def test_spec_json_has_no_password() -> None:
    data = spec_to_json(SPEC)
    assert "hunter2-very-secret" not in json.dumps(data)
    assert data["users"] == [{"name": "app", "host": "10.%", "databases": ["shop"]}]


def test_spec_round_trips_with_the_passwords_given_back() -> None:
    data = json.loads(json.dumps(spec_to_json(SPEC)))
    assert spec_from_json(data, {"app": Secret("hunter2-very-secret")}) == SPEC


def test_a_missing_password_reads_back_empty() -> None:
    spec = spec_from_json(spec_to_json(SPEC), {})
    assert spec.users[0].password == Secret("")


def test_conditions_round_trip() -> None:
    conditions = (
        Condition(ConditionType.READY, True, "Healthy", "accepting connections", since=10.5),
        Condition(ConditionType.DEGRADED, False, "None"),
    )
    assert conditions_from_json(json.loads(json.dumps(conditions_to_json(conditions)))) == conditions
