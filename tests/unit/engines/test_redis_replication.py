"""Pure parts of Redis's replication (`reddwarf.engines.redis.replication`): where a cleanly stopped primary's
stream ends, and how `ACL LIST` is read for the copy of users to replicas."""

from __future__ import annotations

from reddwarf.engines.redis import replication

CHECK_RDB = """[offset 0] Checking RDB file dump.rdb
[offset 27] AUX FIELD redis-ver = '7.0.15'
[offset 110] AUX FIELD repl-stream-db = '0'
[offset 160] AUX FIELD repl-id = '492c6122b6263786a5bfd3a5f09ff57c4da369a2'
[offset 180] AUX FIELD repl-offset = '123456'
[offset 199] \\o/ RDB looks OK! \\o/
"""


def test_a_clean_stop_gives_the_rdb_repl_offset() -> None:
    assert replication.stopped_position(CHECK_RDB) == "123456"


def test_no_fields_means_no_clean_stop() -> None:
    # `position_tool` prints nothing when the log does not end with the clean exit, or the RDB has no offset.
    assert replication.stopped_position("") is None
    assert replication.stopped_position(CHECK_RDB.replace("repl-offset", "other")) is None


def test_acl_list_is_read_as_each_users_rules() -> None:
    reply = [b"user app on #" + b"a" * 64 + b" ~* &* +@all -@dangerous", b"user default off resetpass ~* &* +@all",
             "garbage", b"user lonely"]
    users = replication.acl_lines(reply)
    assert users["app"] == ("on", "#" + "a" * 64, "~*", "&*", "+@all", "-@dangerous")
    assert users["default"][0] == "off" and users["lonely"] == ()
    assert "garbage" not in users and replication.acl_lines(None) == {}
