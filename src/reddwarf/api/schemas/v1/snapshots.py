"""Request body of `POST /instances/{id}/snapshots` (Reddwarf's extension): `{"snapshot": {"name",
"description"}}`; unknown keys are refused by name."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, StrictStr


class SnapshotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr | None = None
    description: StrictStr | None = None


class SnapshotCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    snapshot: SnapshotIn
