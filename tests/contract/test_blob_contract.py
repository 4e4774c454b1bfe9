"""One contract, every blob adapter: a local directory, and S3 as served by moto (the stand-in for MinIO)."""
from __future__ import annotations

import asyncio
import os
import pathlib
import socket
import urllib.request
import uuid

import pytest
import urllib3
from moto.server import ThreadedMotoServer

from mesh.blobs import BlobNotFound, BlobStore, DirectoryBlobStore, S3BlobStore, make_blob_store


@pytest.fixture(scope="module")
def moto_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


def s3_store(endpoint: str, bucket: str | None = None) -> S3BlobStore:
    return S3BlobStore(endpoint, "test", "test", bucket or f"b-{uuid.uuid4().hex[:20]}", secure=False)


@pytest.fixture(params=["directory", "s3"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def store(kind, request, tmp_path) -> BlobStore:
    if kind == "directory":
        return DirectoryBlobStore(tmp_path / "blobs")
    return s3_store(request.getfixturevalue("moto_endpoint"))  # a fresh bucket, created on first use


async def http_get(url: str) -> bytes:
    def fetch() -> bytes:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.read()
    return await asyncio.to_thread(fetch)


async def test_ping(store):
    await store.ping()


async def test_put_get_roundtrip_keeps_content_type(store):
    await store.put("pets/abc/photos/def", b"\x89PNG\r\n\x1a\n...", "image/png")
    assert await store.get("pets/abc/photos/def") == (b"\x89PNG\r\n\x1a\n...", "image/png")


async def test_overwrite_replaces_data_and_content_type(store):
    await store.put("pets/abc/photos/def", b"first", "image/png")
    await store.put("pets/abc/photos/def", b"second, longer", "image/jpeg")
    assert await store.get("pets/abc/photos/def") == (b"second, longer", "image/jpeg")


async def test_keys_are_independent(store):
    await store.put("pets/a/photos/1", b"one", "image/png")
    await store.put("pets/a/photos/2", b"two", "image/webp")
    await store.delete("pets/a/photos/1")
    assert await store.get("pets/a/photos/2") == (b"two", "image/webp")


async def test_missing_key_raises_blob_not_found(store):
    with pytest.raises(BlobNotFound):
        await store.get("pets/nobody/photos/nothing")
    with pytest.raises(KeyError):  # callers may catch the broader KeyError
        await store.get("pets/nobody/photos/nothing")


async def test_delete_then_get_raises(store):
    await store.put("pets/abc/photos/def", b"x", "image/png")
    await store.delete("pets/abc/photos/def")
    with pytest.raises(BlobNotFound):
        await store.get("pets/abc/photos/def")


async def test_delete_missing_is_ok(store):
    await store.delete("pets/nobody/photos/nothing")
    await store.delete("pets/nobody/photos/nothing")


async def test_empty_blob(store):
    await store.put("empty", b"", "application/octet-stream")
    assert await store.get("empty") == (b"", "application/octet-stream")


async def test_large_binary_roundtrip(store):
    data = os.urandom(5 * 1024 * 1024)
    await store.put("pets/big/photos/raw", data, "application/octet-stream")
    got, content_type = await store.get("pets/big/photos/raw")
    assert got == data and content_type == "application/octet-stream"


async def test_url(store, kind):
    await store.put("pets/abc/photos/def", b"photo bytes", "image/jpeg")
    url = await store.url("pets/abc/photos/def", expires_seconds=60)
    if kind == "directory":
        assert url == "/v1/blobs/pets/abc/photos/def"
    else:
        assert url.startswith("http://127.0.0.1:") and "X-Amz-Signature=" in url
        assert await http_get(url) == b"photo bytes"


async def test_urls_are_made_without_io(store, monkeypatch):
    """A page of pets builds a URL per photo: neither the filesystem nor the network may be asked."""
    await store.url("pets/abc/photos/warm")  # a store may set itself up once

    def refuse(*args, **kwargs):
        raise AssertionError("I/O while making a URL")
    monkeypatch.setattr(pathlib.Path, "resolve", refuse)
    monkeypatch.setattr(pathlib.Path, "exists", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(asyncio, "to_thread", refuse)
    for i in range(20):
        assert f"photos/p{i}" in await store.url(f"pets/abc/photos/p{i}")


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../outside", "pets/../../outside", "pets/./x", "pets//x",
                                 "pets/x/", "pets\\x", "pets/x.meta"])
async def test_invalid_keys_are_rejected(store, key):
    with pytest.raises(ValueError):
        await store.put(key, b"x", "text/plain")
    for call in (store.get, store.delete, store.url):
        with pytest.raises(ValueError):
            await call(key)


async def test_directory_store_stays_inside_its_root(tmp_path):
    root = tmp_path / "blobs"
    (tmp_path / "elsewhere").mkdir()
    root.mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    store = DirectoryBlobStore(root)
    with pytest.raises(ValueError):
        await store.put("link/x", b"x", "text/plain")
    await store.put("pets/a/photos/b", b"x", "text/plain")
    assert not list((tmp_path / "elsewhere").iterdir())
    assert sorted(p.name for p in (root / "pets/a/photos").iterdir()) == ["b", "b.meta"]  # no temp files left


async def test_directory_store_prefix_of_a_key_is_not_a_blob(tmp_path):
    store = DirectoryBlobStore(tmp_path)
    await store.put("pets/a/photos/b", b"x", "text/plain")
    with pytest.raises(BlobNotFound):
        await store.get("pets/a")
    with pytest.raises(BlobNotFound):
        await store.get("pets/a/photos/b/c")
    await store.delete("pets/a/photos/b/c")


async def test_s3_store_shares_an_existing_bucket(moto_endpoint):
    bucket = f"b-{uuid.uuid4().hex[:20]}"
    first, second = s3_store(moto_endpoint, bucket), s3_store(moto_endpoint, bucket)
    await first.put("k", b"v", "text/plain")
    assert await second.get("k") == (b"v", "text/plain")


async def test_s3_ping_raises_when_unreachable():
    with pytest.raises(urllib3.exceptions.HTTPError):
        await s3_store("127.0.0.1:1").ping()


async def test_make_blob_store_picks_the_adapter(tmp_path, moto_endpoint):
    args = dict(s3_access_key="test", s3_secret_key="test", s3_bucket="petplatform", s3_secure=False,
                data_dir=tmp_path)
    local = make_blob_store(s3_endpoint=None, **args)
    assert isinstance(local, DirectoryBlobStore)
    await local.put("k", b"v", "text/plain")
    assert (tmp_path / "blobs" / "k").read_bytes() == b"v"
    assert isinstance(make_blob_store(s3_endpoint=moto_endpoint, **args), S3BlobStore)
