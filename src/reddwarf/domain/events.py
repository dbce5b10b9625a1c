"""A resource's history: what was asked and what happened, as an operator or tenant reads it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """A line of a resource's history, as an operator or tenant reads it."""

    resource_id: str
    kind: str
    message: str
    created: float
