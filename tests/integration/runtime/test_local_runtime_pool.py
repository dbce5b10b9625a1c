"""The copy-on-write volume pool: instance images on an XFS filesystem with reflinks, out of every instance
user's reach; a copy of an image is a reflink (it takes no room until written); instances made before the
pool move into it at their next restart, their data intact; a filesystem without
reflinks is refused with a clear error rather than used for copies."""

from __future__ import annotations

import hashlib
import mmap
import os
import random
import stat
import subprocess
from pathlib import Path

import pytest
from local_runtime_support import Instances
from tests.support.server import wait_for

from reddwarf.domain.errors import PermanentError
from reddwarf.domain.workload import CommandSpec, Resources, WorkloadSpec
from reddwarf.runtimes.local import volumes
from reddwarf.runtimes.local.paths import layout
from reddwarf.runtimes.local.pool import extent_count

RESOURCES = Resources(memory_mb=256, vcpus=1, volume_gb=1)
POOL_GB = 3
WRITTEN_MB = 200


def _sleeper(instance_id: str) -> WorkloadSpec:
    return WorkloadSpec(instance_id=instance_id, init=(), server=CommandSpec(argv=("/bin/sleep", "600")),
                        resources=RESOURCES, stop_timeout=5.0)


def _free(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def test_volumes_live_on_the_pool_out_of_reach_and_copy_by_reflink(instances: Instances, port: int) -> None:
    runtime = instances.runtime(use_cow_pool="true", pool_gb=POOL_GB)
    assert runtime.isolation_report()["volume_pool"] == "copy-on-write"
    placement = instances.prepare(runtime, RESOURCES, port)
    pool = instances.state_dir / "pool"
    image = pool / "volumes" / f"{placement.instance_id}.img"
    assert volumes.mount_at(pool) is not None and volumes.mount_at(pool).fstype == "xfs"  # type: ignore[union-attr]
    assert image.is_file() and not layout(runtime._settings, placement.instance_id).volume_image.exists()
    assert volumes.mount_at(Path(placement.data_dir).parent) is not None
    info = pool.stat()
    assert info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o700
    capacity = runtime.storage_capacity()
    assert capacity is not None and 0.9 * POOL_GB * volumes.GIB < capacity <= POOL_GB * volumes.GIB

    # The instance's own user (a tenant with code execution) cannot reach the images.
    owner = Path(placement.data_dir).stat().st_uid
    tried = subprocess.run(["setpriv", f"--reuid={owner}", f"--regid={owner}", "--clear-groups", "cat", str(image)],
                           check=False, capture_output=True, text=True)
    assert tried.returncode != 0 and "Permission denied" in tried.stderr

    # Data written in the volume, then a copy of the image: it shares every block (no room taken).
    with open(Path(placement.data_dir) / "rows", "wb") as out:
        out.write(os.urandom(WRITTEN_MB << 20))
    volumes.flush(Path(placement.data_dir))
    before = _free(pool)
    assert runtime._pool is not None
    runtime._pool.clone(image, pool / "volumes" / "copy.img")
    assert before - _free(pool) < 16 << 20  # a full copy would take over 200 MB
    assert (pool / "volumes" / "copy.img").stat().st_size == image.stat().st_size
    (pool / "volumes" / "copy.img").unlink()

    runtime.destroy(placement)
    assert not image.exists()


def test_an_instance_made_before_the_pool_moves_into_it_at_its_next_restart(instances: Instances, port: int) -> None:
    older = instances.runtime(use_cow_pool="false")
    placement = instances.prepare(older, RESOURCES, port)
    paths = layout(older._settings, placement.instance_id)
    rows = os.urandom(1 << 20)
    (Path(placement.data_dir) / "rows").write_bytes(rows)
    older.start(placement, _sleeper(placement.instance_id))
    assert paths.volume_image.exists()

    # The control plane comes back with the pool on: the running server is left where it is.
    pooled = instances.runtime(use_cow_pool="true", pool_gb=POOL_GB)
    assert pooled.observe(placement).running and paths.volume_image.exists()

    # Its next restart: the stop unmounts the volume kept outside the pool, the start copies it in.
    pooled.stop(placement, _sleeper(placement.instance_id))
    assert not volumes.is_mounted(paths.volume_dir)
    pooled.start(placement, _sleeper(placement.instance_id))
    moved = instances.state_dir / "pool" / "volumes" / f"{placement.instance_id}.img"
    assert moved.is_file() and not paths.volume_image.exists()
    assert (Path(placement.data_dir) / "rows").read_bytes() == rows
    assert pooled.observe(placement).running
    # From now on a restart keeps it mounted where it is.
    pooled.stop(placement, _sleeper(placement.instance_id))
    assert volumes.is_mounted(paths.volume_dir)


def test_a_pool_directory_without_reflinks_is_refused_by_name(instances: Instances, port: int) -> None:
    # An instance's own volume is ext4, which has no reflinks.
    holder = instances.prepare(instances.runtime(), RESOURCES, port)
    plain = Path(holder.data_dir) / "not-a-reflink-fs"
    plain.mkdir()
    runtime = instances.runtime(use_cow_pool="true", pool_dir=str(plain))
    with pytest.raises(PermanentError, match=f"the volume pool at {plain} cannot make reflinks"):
        instances.prepare(runtime, RESOURCES, port)


def test_the_pools_capacity_leaves_room_for_its_own_metadata(instances: Instances) -> None:
    """Every volume, snapshot and branch reserves its size against the pool's capacity, so that a pool fully
    reserved can still take every reserved block: a write that finds the pool full is an I/O error inside a
    tenant's filesystem. XFS keeps part of the pool for its own metadata (0.75-1.8 % of an empty one,
    measured; the reflinks' refcount trees grow with sharing): the capacity must not count it."""
    runtime = instances.runtime(use_cow_pool="true", pool_gb=POOL_GB)
    assert runtime._pool is not None
    instances.state_dir.mkdir(parents=True, exist_ok=True)
    runtime._pool.ensure()
    capacity = runtime.storage_capacity()
    assert capacity is not None and capacity <= _free(instances.state_dir / "pool") * 0.99


def test_a_volume_written_in_random_order_keeps_its_image_in_few_extents(instances: Instances, port: int) -> None:
    """What an engine does to a new volume (InnoDB's pages, PostgreSQL's relations): each first write of a
    page allocates in the image, and a snapshot's reflink takes time per extent."""
    runtime = instances.runtime(use_cow_pool="true", pool_gb=POOL_GB)
    placement = instances.prepare(runtime, RESOURCES, port)
    image = instances.state_dir / "pool" / "volumes" / f"{placement.instance_id}.img"
    pages = Path(placement.data_dir) / "pages"
    page = 16 << 10
    fd = os.open(pages, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
    try:
        os.posix_fallocate(fd, 0, 4096 * page)
        with memoryview(mmap.mmap(-1, page)) as aligned:
            aligned[:] = os.urandom(page)
            for number in random.Random(11).sample(range(4096), 4096):
                os.pwrite(fd, aligned, number * page)
    finally:
        os.close(fd)
    volumes.flush(pages.parent)
    # Without the pool's extent size hint, about one extent per page (over 4,000).
    assert extent_count(image) < 400


def test_a_fragmented_volume_image_is_rebased_online_and_keeps_its_data(instances: Instances, port: int) -> None:
    runtime = instances.runtime(use_cow_pool="true", pool_gb=POOL_GB, rebase_extents=256)
    placement = instances.prepare(runtime, RESOURCES, port)
    image = instances.state_dir / "pool" / "volumes" / f"{placement.instance_id}.img"
    rows = Path(placement.data_dir) / "rows"
    rows.write_bytes(os.urandom(64 << 20))
    volumes.flush(rows.parent)
    assert runtime._pool is not None
    # A snapshot shares every extent; random writes after it split the image (what a busy tenant does).
    runtime._pool.clone(image, image.with_name("shared.img"))
    fd = os.open(rows, os.O_RDWR | os.O_DIRECT)
    block = bytearray(os.urandom(4096))
    with memoryview(mmap.mmap(-1, 4096)) as aligned:
        aligned[:] = block
        for offset in random.Random(7).sample(range((64 << 20) // 4096), 2000):
            os.pwrite(fd, aligned, offset * 4096)
    os.close(fd)
    volumes.flush(rows.parent)
    expected = hashlib.sha256(rows.read_bytes()).hexdigest()
    fragmented = extent_count(image)
    assert fragmented > 1000

    image.with_name("shared.img").unlink()
    runtime.upkeep()  # in a thread of its own
    wait_for(lambda: extent_count(image) < 256, 60, "the image to be re-based")
    assert runtime._upkeep is not None
    runtime._upkeep.join(30)

    # The mounted volume sees the same bytes; a copy of it is milliseconds again.
    subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], check=True)
    assert hashlib.sha256(rows.read_bytes()).hexdigest() == expected
    runtime._pool.clone(image, image.with_name("copy.img"))
    image.with_name("copy.img").unlink()
