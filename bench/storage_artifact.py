"""Artifact writer and reader throughput on the filesystem target, against zstd alone.

Generates `--mb` MB of pgbench-like text (`pgbench_accounts` rows: aid, bid, abalance, an 84-space filler)
in memory, then, in the same run:

- `zstd alone`: the same zstd settings (level 1, 2 threads, content checksum as the `zstd` command writes by
  default) compressing the stream to nothing: the floor of
  any store that compresses (what "raw tool piped through the same compressor" costs beyond the tool);
- `writer` / `writer+aes`: `ArtifactWriter` to a `FilesystemStorage` under `--dir`, fed in 256 KiB pieces as a
  pipe reader would; also the share of the time the feeding thread spent inside `write()` (blocked);
- `reader` / `reader+aes`: `read_artifact` of what was written, every byte verified.

Throughputs are MB (10^6 bytes) of the raw stream per second of wall time, the median of `--rounds` rounds
that each run every case once (other load on the machine moves them alike). The last line is one JSON object.

    .venv/bin/python bench/storage_artifact.py --mb 500
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import zstandard

from reddwarf.storage.artifact import ArtifactOptions, ArtifactWriter, Keyring, read_artifact
from reddwarf.storage.filesystem import FilesystemStorage

PIECE = 256 << 10


def pgbench_text(megabytes: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    filler = " " * 84
    lines: list[str] = []
    size = 0
    aid = 0
    while size < megabytes * 1_000_000:
        block = [f"{aid + i}\t{(aid + i) // 100000 + 1}\t{rng.randint(-5000, 5000)}\t{filler}\n" for i in range(10000)]
        aid += 10000
        text = "".join(block)
        lines.append(text)
        size += len(text)
    return "".join(lines).encode()


def pieces(data: bytes) -> list[bytes]:
    return [data[i : i + PIECE] for i in range(0, len(data), PIECE)]


def zstd_alone(chunks: list[bytes], options: ArtifactOptions) -> tuple[float, int]:
    compressor = zstandard.ZstdCompressor(level=options.level, threads=options.threads, write_checksum=True)
    obj = compressor.compressobj()
    out = 0
    start = time.perf_counter()
    for piece in chunks:
        out += len(obj.compress(piece))
    out += len(obj.flush())
    return time.perf_counter() - start, out


def write(chunks: list[bytes], storage: FilesystemStorage, key: str, options: ArtifactOptions,
          keyring: Keyring | None) -> dict[str, Any]:
    start = time.perf_counter()
    inside = 0.0
    writer = ArtifactWriter(storage, key, options, keyring)
    for piece in chunks:
        t = time.perf_counter()
        writer.write(piece)
        inside += time.perf_counter() - t
    t = time.perf_counter()
    manifest = writer.close()
    closing = time.perf_counter() - t
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "in_write": inside, "closing": closing, "manifest": manifest}


def one_round(chunks: list[bytes], raw_mb: float, storage: FilesystemStorage, keyring: Keyring,
              args: argparse.Namespace) -> dict[str, float]:
    plain = ArtifactOptions(level=args.level, threads=args.threads)
    sealed = ArtifactOptions(level=args.level, threads=args.threads, encrypt=True)
    hashed = ArtifactOptions(level=args.level, threads=args.threads, raw_sha256=True)
    figures: dict[str, float] = {}
    seconds, compressed = zstd_alone(chunks, plain)
    figures["zstd_alone_mb_s"] = raw_mb / seconds
    figures["ratio"] = raw_mb * 1e6 / compressed
    cases = (("writer", plain, None), ("writer+aes", sealed, keyring), ("writer+rawsha", hashed, None))
    for label, options, ring in cases:
        run = write(chunks, storage, f"bench/{label}", options, ring)
        figures[f"{label}_mb_s"] = raw_mb / run["seconds"]
        figures[f"{label}_blocked_share"] = run["in_write"] / run["seconds"]
        start = time.perf_counter()
        total = sum(len(part) for part in read_artifact(storage, run["manifest"], keyring))
        seconds = time.perf_counter() - start
        assert total == run["manifest"].raw_bytes
        figures[f"{label.replace('writer', 'reader')}_mb_s"] = raw_mb / seconds
    print("  ".join(f"{name} {value:.1f}" for name, value in figures.items() if name.endswith("mb_s")), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--level", type=int, default=1)
    args = parser.parse_args()

    data = pgbench_text(args.mb)
    raw_mb = len(data) / 1e6
    chunks = pieces(data)
    del data
    root = Path(tempfile.mkdtemp(prefix="reddwarf-bench-storage-", dir=args.dir))
    rounds: list[dict[str, float]] = []
    try:
        storage = FilesystemStorage(root / "backups")
        keyring = Keyring.load_or_create(root / "keys")
        for _ in range(args.rounds):
            rounds.append(one_round(chunks, raw_mb, storage, keyring, args))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results: dict[str, Any] = {"raw_mb": round(raw_mb, 1), "rounds": args.rounds}
    for name in rounds[0]:
        results[name] = round(statistics.median(r[name] for r in rounds), 3 if "share" in name else 1)
    for name, value in results.items():
        print(f"{name:<28} {value}")
    results["writer_vs_zstd"] = round(results["writer_mb_s"] / results["zstd_alone_mb_s"], 3)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
