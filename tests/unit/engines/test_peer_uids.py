"""`peer.uid_of` remembers uids while /etc/passwd is unchanged: health pings every instance every few seconds,
and each look-up would parse the whole user database."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from reddwarf.engines import peer


def test_a_uid_is_looked_up_once_until_the_user_database_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("rd-one:x:990:990::/:/usr/sbin/nologin\n")
    uids = {"rd-one": 990}
    asked: list[str] = []

    def getpwnam(name: str) -> pwd.struct_passwd:
        asked.append(name)
        if name not in uids:
            raise KeyError(name)
        return pwd.struct_passwd((name, "x", uids[name], uids[name], "", "/", "/usr/sbin/nologin"))

    monkeypatch.setattr(peer, "PASSWD", passwd)
    monkeypatch.setattr(peer.pwd, "getpwnam", getpwnam)
    monkeypatch.setattr(peer, "_UIDS", peer._Uids())

    assert [peer.uid_of("rd-one") for _ in range(3)] == [990, 990, 990]
    assert asked == ["rd-one"]

    # userdel and useradd replace the file: the user is gone, then back with another uid.
    del uids["rd-one"]
    passwd.write_text("")
    with pytest.raises(peer.WrongPeer):
        peer.uid_of("rd-one")
    uids["rd-one"] = 991
    passwd.write_text("rd-one:x:991:991::/:/usr/sbin/nologin\n")
    os.utime(passwd, ns=(1, 1))  # a new time even within the file system's timestamp granularity
    assert peer.uid_of("rd-one") == 991
    assert asked == ["rd-one", "rd-one", "rd-one"]
