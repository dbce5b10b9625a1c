"""A stand-in for a redis-py connection in the Redis engine's unit tests (`reddwarf.engines.redis.admin`)."""

from __future__ import annotations

from typing import Any

from reddwarf.engines.redis.admin import CommandClient


class FakeRedisClient:
    """Answers ACL GETUSER with None (no such user) and everything else with OK; fails ACL SETUSER or ACL SAVE
    with the error a test gives. Records every command."""

    def __init__(self, setuser_error: Exception | None = None, save_error: Exception | None = None) -> None:
        self.setuser_error = setuser_error
        self.save_error = save_error
        self.calls: list[tuple[str, ...]] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        command = tuple(str(arg) for arg in args)
        self.calls.append(command)
        if command[:2] == ("ACL", "SETUSER") and self.setuser_error:
            raise self.setuser_error
        if command[:2] == ("ACL", "SAVE") and self.save_error:
            raise self.save_error
        return None if command[:2] == ("ACL", "GETUSER") else b"OK"


# The protocol check: mypy fails here when the fake drifts from what the engine asks of a connection.
_CLIENT: CommandClient = FakeRedisClient()
