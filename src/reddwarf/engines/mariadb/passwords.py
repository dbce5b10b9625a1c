"""Client-side `mysql_native_password` hashes, so that a plain password never reaches the server.

MariaDB stores `'*' + HEX(SHA1(SHA1(password)))` and accepts that stored form as is in
`CREATE USER ... IDENTIFIED BY PASSWORD '<hash>'`; PyMySQL (like every client) sends the password's UTF-8
bytes through the same scramble, so a login with the plain password matches the hash computed here. The
plain password therefore never crosses the wire and cannot reach a general, slow, binary or error log.
"""

from __future__ import annotations

import hashlib
import hmac
import re

PLUGIN = "mysql_native_password"
_HASH = re.compile(r"\*[0-9A-F]{40}")


def native_hash(password: str) -> str:
    """The stored `mysql_native_password` form of `password` (unsalted by design of that plugin)."""
    stage1 = hashlib.sha1(password.encode("utf-8")).digest()  # noqa: S324 -- the plugin's own algorithm
    return "*" + hashlib.sha1(stage1).hexdigest().upper()  # noqa: S324


def matches(password: str, stored: str | None) -> bool:
    """True when `stored` is the native hash of `password` (constant-time comparison)."""
    return stored is not None and hmac.compare_digest(native_hash(password), stored.upper())


def mask_hashes(text: str) -> str:
    """`text` with every native password hash replaced by a mask (for messages that may quote a statement)."""
    return _HASH.sub("*<hash>", text)
