"""One suite per storage port, run against every adapter: cache (memory, Redis), blobs (directory, S3)."""
from __future__ import annotations

import asyncio
import os
import urllib.request
import uuid

import pytest

from mesh.blobs import BlobNotFound, DirectoryBlobStore, S3BlobStore
from mesh.cache import MemoryCache, RedisCache
from tests.conftest import REDIS_URL


@pytest.fixture(params=["memory", "redis"])
async def cache(request):
    c = MemoryCache() if request.param == "memory" else RedisCache(REDIS_URL, prefix=f"test:{uuid.uuid4().hex}:")
    await c.ping()  # Redis must be there: this fails loudly rather than skipping
    yield c
    await c.close()


async def test_cache_get_set_delete(cache):
    assert await cache.get("k") is None
    await cache.set("k", b"\x00\xffbinary")
    assert await cache.get("k") == b"\x00\xffbinary"
    await cache.delete("k")
    await cache.delete("k")
    assert await cache.get("k") is None


async def test_cache_ttl(cache):
    await cache.set("short", b"1", ttl_seconds=0.2)
    await cache.set("long", b"1", ttl_seconds=30)
    assert await cache.get("short") == b"1"
    await asyncio.sleep(0.3)
    assert await cache.get("short") is None and await cache.get("long") == b"1"


async def test_cache_fixed_window_counter(cache):
    assert await cache.incr("w", 0.3) == (1, pytest.approx(0.3, abs=0.05))
    count, reset = await cache.incr("w", 0.3)
    assert count == 2 and 0 < reset <= 0.3
    assert await cache.get("w") == b"2"
    await asyncio.sleep(0.35)
    assert (await cache.incr("w", 0.3))[0] == 1, "a new window starts after the old one ends"


async def test_cache_counter_is_atomic_under_concurrency(cache):
    counts = await asyncio.gather(*(cache.incr("hot", 10) for _ in range(200)))
    assert sorted(c for c, _ in counts) == list(range(1, 201))


async def test_redis_prefix_isolates_replicas_of_different_deployments():
    a, b = (RedisCache(REDIS_URL, prefix=f"test:{uuid.uuid4().hex}:") for _ in range(2))
    try:
        await a.set("k", b"a")
        assert await b.get("k") is None
        shared = RedisCache(REDIS_URL, prefix=a._prefix)  # another replica of the same deployment
        assert (await a.incr("n", 5))[0] == 1 and (await shared.incr("n", 5))[0] == 2
        await shared.close()
    finally:
        await a.close()
        await b.close()


@pytest.fixture(params=["directory", "s3"])
async def blobs(request, tmp_path, s3_endpoint):
    if request.param == "directory":
        store = DirectoryBlobStore(tmp_path / "blobs")
    else:
        store = S3BlobStore(s3_endpoint, "test", "test", f"b{uuid.uuid4().hex[:12]}", secure=False)
    await store.ping()
    return store


async def test_blob_roundtrip_overwrite_delete(blobs):
    await blobs.put("pets/a/photos/b", b"one", "image/png")
    assert await blobs.get("pets/a/photos/b") == (b"one", "image/png")
    await blobs.put("pets/a/photos/b", b"two", "image/jpeg")
    assert await blobs.get("pets/a/photos/b") == (b"two", "image/jpeg")
    await blobs.delete("pets/a/photos/b")
    with pytest.raises(BlobNotFound):
        await blobs.get("pets/a/photos/b")
    await blobs.delete("pets/a/photos/b")  # deleting what is gone is fine


async def test_large_blob(blobs):
    data = os.urandom(5 * 1024 * 1024)
    await blobs.put("big", data, "application/octet-stream")
    assert (await blobs.get("big"))[0] == data


async def test_blob_urls(blobs):
    await blobs.put("pets/x/photos/y", b"pixels", "image/webp")
    url = await blobs.url("pets/x/photos/y")
    if isinstance(blobs, DirectoryBlobStore):
        assert url == "/v1/blobs/pets/x/photos/y"  # served by the edge
    else:
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        assert body == b"pixels", "the presigned URL downloads the object"


@pytest.mark.parametrize("key", ["../outside", "/etc/passwd", "a/../../b", ""])
async def test_directory_store_refuses_keys_that_escape(tmp_path, key):
    store = DirectoryBlobStore(tmp_path / "blobs")
    with pytest.raises(ValueError):
        await store.put(key, b"x", "text/plain")
