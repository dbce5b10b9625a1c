"""Object keys every Storage accepts: relative, '/'-separated, no empty, '.' or '..' part (see `base`).

A key never names a place outside its storage's root, whatever the target: a key that slipped through from
a tenant's input (a container name) could otherwise reach another tenant's backups or the control plane's
own files.
"""

from __future__ import annotations

# Temporaries of unfinished writes carry this prefix in their name; no key may use it (see `filesystem`).
TEMPORARY_MARK = ".reddwarf-tmp-"
MAX_KEY_LENGTH = 1024


def check_key(key: str) -> str:
    """`key` itself when it is a valid object key, else ValueError naming it."""
    if not key or len(key) > MAX_KEY_LENGTH or "\x00" in key or key.startswith("/") or "\\" in key:
        raise ValueError(f"invalid storage key {key!r}: keys are relative '/'-separated paths")
    for part in key.split("/"):
        if part in {"", ".", ".."}:
            raise ValueError(f"invalid storage key {key!r}: no empty, '.' or '..' part")
        if part.startswith(TEMPORARY_MARK):
            raise ValueError(f"invalid storage key {key!r}: {TEMPORARY_MARK!r} names unfinished writes")
    return key


def check_prefix(prefix: str, *, allow_empty: bool) -> str:
    """`prefix` itself when it is '' (if allowed) or a valid key followed by '/', else ValueError."""
    if prefix == "" and allow_empty:
        return prefix
    if not prefix.endswith("/"):
        raise ValueError(f"invalid storage prefix {prefix!r}: a prefix is a key that ends with '/'")
    check_key(prefix[:-1])
    return prefix
