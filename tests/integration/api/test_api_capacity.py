"""Admission of creates: the project's quotas (Trove's 413 overLimit) and the host's storage (503), each
refusal creating nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from api_support import Api, build_api, create_body

from reddwarf import wiring
from reddwarf.domain.capacity import GIB
from reddwarf.runtimes.local.runtime import LocalRuntime
from reddwarf.settings import Settings


def _reservations(api: Api) -> int:
    return api.count("storage_reservations")


def test_a_create_the_host_storage_cannot_hold_is_refused_with_503_and_creates_nothing(
    tmp_path: Path, store_template: Any
) -> None:
    for api in build_api(tmp_path, template=store_template):
        object.__setattr__(api.ctx, "storage_capacity", lambda: 3 * GIB)
        assert api.post("/instances", create_body(volume={"size": 2})).status_code == 200

        response = api.post("/instances", create_body(name="db2", volume={"size": 2}))

        assert response.status_code == 503, response.text
        fault = response.json()["serviceUnavailable"]
        assert fault["code"] == 503 and "not enough storage" in fault["message"]
        assert (api.count("instances"), len(api.operations()), _reservations(api)) == (1, 1, 1)
        assert api.count("secrets") == 1  # the first instance's admin password only

        assert api.post("/instances", create_body(name="db3", volume={"size": 1})).status_code == 200


def test_the_overcommit_ratio_scales_what_the_host_admits(tmp_path: Path, store_template: Any) -> None:
    for api in build_api(tmp_path, template=store_template, storage_overcommit_ratio=2.0):
        object.__setattr__(api.ctx, "storage_capacity", lambda: 2 * GIB)
        assert api.post("/instances", create_body(volume={"size": 3})).status_code == 200
        assert api.post("/instances", create_body(name="db2", volume={"size": 2})).status_code == 503


def test_a_create_over_the_project_volume_quota_is_413_over_limit(tmp_path: Path, store_template: Any) -> None:
    for api in build_api(tmp_path, template=store_template):
        object.__setattr__(api.ctx, "max_volume_gb_per_project", 3)
        assert api.post("/instances", create_body(volume={"size": 2})).status_code == 200

        response = api.post("/instances", create_body(name="db2", volume={"size": 2}))

        assert response.status_code == 413
        assert response.json()["overLimit"]["message"] == "Quota exceeded for resources: ['volumes']."
        assert (api.count("instances"), _reservations(api)) == (1, 1)
        other = api.post(
            "/instances", create_body(name="db3", volume={"size": 2}), who="other", project=api.other_project
        )
        assert other.status_code == 200  # another project's quota is its own


def test_the_control_plane_has_finite_quotas_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDDWARF_LOCAL_POOL_GB", "1")  # the copy-on-write pool, where the host has one: small
    settings = Settings(state_dir=tmp_path / "state")
    components = wiring.build(settings)
    try:
        ctx = components.service_context()
        assert (ctx.max_instances_per_project, ctx.max_volume_gb_per_project) == (10, 40)
        assert ctx.storage_capacity is not None and ctx.storage_capacity() is not None
        assert settings.storage_overcommit_ratio == 1.0
    finally:
        components.db.dispose()
        runtime = components.runtime
        if isinstance(runtime, LocalRuntime):
            runtime.release_pool()
