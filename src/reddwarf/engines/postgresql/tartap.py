"""A tap on a tar stream that keeps one member's content and lets everything else flow past.

`pg_basebackup -D - -Ft` writes the whole backup as one tar on stdout and injects the backup manifest into
it as the member `backup_manifest`; the control plane stores the stream as it is and needs the manifest
beside it (an incremental names its parent's manifest; the metadata comes from it). The stream is tens or
hundreds of GiB, so it is never buffered: `TarMemberTap.feed()` walks the 512-byte headers as the bytes go
by, skips every other member's content and padding by counting (no copy), and keeps only the wanted
member's content, up to a limit. Pure: no I/O.

Understood headers: POSIX ustar (name with its `prefix`), GNU long names (`L`) and pax extended headers
(`x`, their `path`), sizes in octal or GNU base-256. The archive ends at its first all-zero header block.
"""

from __future__ import annotations

from enum import Enum

BLOCK = 512
_NAME = slice(0, 100)
_SIZE = slice(124, 136)
_TYPE = 156
_MAGIC = slice(257, 263)
_PREFIX = slice(345, 500)
_GNU_LONG_NAME = ord("L")
_PAX_HEADER = ord("x")
_PAX_GLOBAL = ord("g")
_META_LIMIT = 1 << 20  # a long name or pax header larger than this is not a backup's


class TarError(ValueError):
    """The stream is not a tar archive this tap understands, or the wanted member is too large."""


class _State(Enum):
    HEADER = 1  # collecting a 512-byte header
    CONTENT = 2  # inside a member's content (kept or skipped)
    PADDING = 3  # skipping to the next 512-byte boundary
    END = 4  # after the end-of-archive block: everything else is ignored


def _field(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _size(raw: bytes) -> int:
    if raw[0] & 0x80:  # GNU base-256: big-endian, the high bit of the first byte is the marker
        return int.from_bytes(bytes([raw[0] & 0x7F]) + raw[1:], "big")
    text = raw.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarError(f"bad size field {raw!r} in a tar header") from None


def _checksum_ok(header: bytes) -> bool:
    stored = header[148:156].split(b"\0", 1)[0].strip(b" ")
    try:
        expected = int(stored, 8)
    except ValueError:
        return False
    computed = sum(header[:148]) + 8 * ord(" ") + sum(header[156:])
    return computed == expected


def _pax_path(records: bytes) -> str | None:
    """The `path` record of a pax extended header (`<len> path=<value>\\n` records)."""
    found: str | None = None
    rest = records
    while rest:
        length_text, _, _ = rest.partition(b" ")
        try:
            length = int(length_text)
        except ValueError:
            raise TarError("malformed pax extended header") from None
        if length <= 0 or length > len(rest):
            raise TarError("malformed pax extended header")
        record, rest = rest[:length], rest[length:]
        key, _, value = record[len(length_text) + 1 :].rstrip(b"\n").partition(b"=")
        if key == b"path":
            found = value.decode("utf-8", "surrogateescape")
    return found


def normalise(name: str) -> str:
    """A member name as a relative path without leading `./` (how pg_basebackup's and GNU tar's names compare)."""
    while name.startswith("./"):
        name = name[2:]
    return name


class TarMemberTap:
    """Feeds on a tar stream in pieces of any size; keeps the content of the member called `wanted`.

    `content` is the kept member (None until it has been read whole); `ended` says the end-of-archive block
    was seen. A second member with the wanted name replaces the first (tar's own rule: the last one wins).
    """

    def __init__(self, wanted: str, limit: int) -> None:
        self._wanted = normalise(wanted)
        self._limit = limit
        self._state = _State.HEADER
        self._header = bytearray()
        self._left = 0  # bytes of content, or padding, still to come
        self._padding = 0  # padding after the current content
        self._keep: bytearray | None = None  # the wanted member's content being read
        self._meta: bytearray | None = None  # a long name or pax header being read
        self._meta_kind = 0
        self._next_name: str | None = None  # from a long-name or pax header, for the next member
        self.content: bytes | None = None
        self.members = 0
        self.ended = False

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            if self._state is _State.END:
                return
            if self._state is _State.HEADER:
                take = min(BLOCK - len(self._header), len(view))
                self._header += view[:take]
                view = view[take:]
                if len(self._header) == BLOCK:
                    self._start_member(bytes(self._header))
                    self._header.clear()
                continue
            take = min(self._left, len(view))
            if self._state is _State.CONTENT:
                if self._keep is not None:
                    self._keep += view[:take]
                elif self._meta is not None:
                    self._meta += view[:take]
            view = view[take:]
            self._left -= take
            if self._left == 0:
                self._advance()

    def _start_member(self, header: bytes) -> None:
        if header.count(0) == BLOCK:
            self._state = _State.END
            self.ended = True
            return
        if not _checksum_ok(header):
            raise TarError(f"bad tar header checksum after {self.members} members")
        size = _size(header[_SIZE])
        kind = header[_TYPE]
        self._padding = -size % BLOCK
        self._left = size
        if kind in (_GNU_LONG_NAME, _PAX_HEADER, _PAX_GLOBAL):
            if size > _META_LIMIT:
                raise TarError(f"a tar extended header of {size} bytes")
            self._meta, self._meta_kind = bytearray(), kind
        else:
            self.members += 1
            name = self._next_name
            if name is None:
                name = _field(header[_NAME])
                prefix = _field(header[_PREFIX]) if header[_MAGIC].startswith(b"ustar") else ""
                if prefix:
                    name = f"{prefix}/{name}"
            self._next_name = None
            if normalise(name) == self._wanted and kind in (ord("0"), 0):
                if size > self._limit:
                    raise TarError(f"tar member {self._wanted} has {size} bytes (at most {self._limit} are kept)")
                self._keep = bytearray()
        self._state = _State.CONTENT
        if size == 0:
            self._advance()

    def _advance(self) -> None:
        """The current content, or padding, has been read whole."""
        if self._state is _State.CONTENT:
            if self._keep is not None:
                self.content, self._keep = bytes(self._keep), None
            elif self._meta is not None:
                meta, self._meta = bytes(self._meta), None
                if self._meta_kind == _GNU_LONG_NAME:
                    self._next_name = _field(meta)
                elif self._meta_kind == _PAX_HEADER:
                    self._next_name = _pax_path(meta)
            if self._padding:
                self._state, self._left = _State.PADDING, self._padding
                return
        self._state = _State.HEADER
