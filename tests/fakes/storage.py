"""A backup target in memory, for unit tests of what sits on `Storage` (the artifact format): objects are
bytes in a dict that a test may read and tamper with (`objects`), unfinished writes are listed apart
(`unfinished`), and reads come in small pieces so that chunk boundaries never line up with them."""

from __future__ import annotations

from collections.abc import Iterator

from reddwarf.storage.base import ArtifactMissing, Storage
from reddwarf.storage.naming import check_key, check_prefix


class MemoryStorage:
    def __init__(self, read_piece: int = 1000) -> None:
        self.objects: dict[str, bytes] = {}
        self.unfinished: dict[int, bytearray] = {}
        self.read_piece = read_piece
        self._next_writer = 0

    @property
    def name(self) -> str:
        return "memory"

    def location(self, key: str) -> str:
        return f"memory:///{check_key(key)}"

    def open_write(self, key: str) -> MemoryWriter:
        self._next_writer += 1
        return MemoryWriter(self, check_key(key), self._next_writer)

    def read(self, key: str, piece: int = 1 << 20) -> Iterator[bytes]:
        data = self._object(key)
        step = min(piece, self.read_piece)
        for start in range(0, len(data), step):
            yield data[start : start + step]

    def put(self, key: str, data: bytes) -> None:
        self.objects[check_key(key)] = bytes(data)

    def get(self, key: str) -> bytes:
        return self._object(key)

    def size(self, key: str) -> int:
        return len(self._object(key))

    def keys(self, prefix: str) -> list[str]:
        check_prefix(prefix, allow_empty=True)
        return sorted(k for k in self.objects if k.startswith(prefix))

    def delete(self, key: str) -> None:
        self.objects.pop(check_key(key), None)

    def delete_prefix(self, prefix: str) -> int:
        check_prefix(prefix, allow_empty=False)
        doomed = [k for k in self.objects if k.startswith(prefix)]
        for key in doomed:
            del self.objects[key]
        count = len(doomed) + len(self.unfinished)
        self.unfinished.clear()
        return count

    def _object(self, key: str) -> bytes:
        try:
            return self.objects[check_key(key)]
        except KeyError:
            raise ArtifactMissing(f"backup object {self.location(key)} is missing") from None


class MemoryWriter:
    def __init__(self, storage: MemoryStorage, key: str, number: int) -> None:
        self._storage = storage
        self._key = key
        self._number = number
        storage.unfinished[number] = bytearray()

    def write(self, data: bytes) -> None:
        self._storage.unfinished[self._number] += data

    def commit(self) -> None:
        self._storage.objects[self._key] = bytes(self._storage.unfinished.pop(self._number))

    def abort(self) -> None:
        self._storage.unfinished.pop(self._number, None)


_: Storage = MemoryStorage()
