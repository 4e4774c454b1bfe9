"""The blob port: S3/MinIO (minio client) or a local directory."""
from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Protocol

import certifi
import urllib3
from minio import Minio
from minio.error import S3Error

_META = ".meta"  # the directory store's sidecar suffix holding the content type


# Areas whose blobs only their service hands out, to whom it decides (chat attachments: GetAttachment, to
# the room's members); the edge's public /v1/blobs/ route never serves them, and no url() is made for them.
PRIVATE_AREAS = ("chat/",)


def is_public(key: str) -> bool:
    return not key.startswith(PRIVATE_AREAS)


class BlobNotFound(KeyError):
    pass


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> tuple[bytes, str]:
        """(data, content type); raises BlobNotFound."""

    async def delete(self, key: str) -> None:
        """A missing key is not an error."""

    async def url(self, key: str, expires_seconds: int = 3600) -> str: ...

    async def ping(self) -> None:
        """Raises if the backend is unusable."""


def check_key(key: str) -> str:
    """Keys are relative slash paths such as "pets/abc/photos/def". Both stores accept the same keys,
    so code that works against the embedded store works against S3."""
    parts = key.split("/")
    if (not key or "\\" in key or "\0" in key or any(p in ("", ".", "..") for p in parts)
            or parts[-1].endswith(_META)):
        raise ValueError(f"invalid blob key {key!r}")
    return key


class DirectoryBlobStore:
    def __init__(self, root: Path, public_base: str = "/v1/blobs"):
        self._root = root.resolve()
        self._public = public_base.rstrip("/")

    def _paths(self, key: str) -> tuple[Path, Path]:
        path = (self._root / check_key(key)).resolve()
        if self._root not in path.parents:  # e.g. through a symlink
            raise ValueError(f"invalid blob key {key!r}")
        return path, path.with_name(path.name + _META)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, *self._paths(key), data, content_type)

    @staticmethod
    def _write(path: Path, meta: Path, data: bytes, content_type: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, payload in ((path, data), (meta, json.dumps({"content_type": content_type}).encode())):
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(payload)
                os.replace(tmp, target)  # readers never see half a file
            except BaseException:
                os.unlink(tmp)
                raise

    async def get(self, key: str) -> tuple[bytes, str]:
        return await asyncio.to_thread(self._read, key, *self._paths(key))

    @staticmethod
    def _read(key: str, path: Path, meta: Path) -> tuple[bytes, str]:
        try:
            return path.read_bytes(), json.loads(meta.read_bytes())["content_type"]
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._remove, *self._paths(key))

    @staticmethod
    def _remove(path: Path, meta: Path) -> None:
        for p in (path, meta):
            try:
                p.unlink()
            except (FileNotFoundError, NotADirectoryError):
                pass

    async def url(self, key: str, expires_seconds: int = 3600) -> str:
        # No filesystem lookup: a page lists 20 photos, and check_key already refuses every way out of
        # the root a key could spell (get and put also refuse symlinks out of it).
        return f"{self._public}/{check_key(key)}"

    async def ping(self) -> None:
        await asyncio.to_thread(self._root.mkdir, parents=True, exist_ok=True)


class S3BlobStore:
    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, secure: bool,
                 region: str = "us-east-1"):
        # minio's default waits 5 minutes to connect and retries 5 times: too long for a readiness probe.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60), maxsize=10, cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]))
        # A fixed region also spares presigning a round trip to look the bucket's region up.
        self._c = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region,
                        http_client=http)
        self._bucket = bucket
        self._ready = False

    async def ensure_bucket(self) -> None:
        if self._ready:
            return
        if not await asyncio.to_thread(self._c.bucket_exists, self._bucket):
            try:
                await asyncio.to_thread(self._c.make_bucket, self._bucket)
            except S3Error as e:  # another replica got there first
                if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        self._ready = True

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self.ensure_bucket()
        await asyncio.to_thread(self._c.put_object, self._bucket, check_key(key), io.BytesIO(data), len(data),
                                content_type=content_type)

    async def get(self, key: str) -> tuple[bytes, str]:
        await self.ensure_bucket()
        return await asyncio.to_thread(self._read, check_key(key))

    def _read(self, key: str) -> tuple[bytes, str]:
        try:
            resp = self._c.get_object(self._bucket, key)
        except S3Error as e:
            if e.code in ("NoSuchKey", "NoSuchObject"):
                raise BlobNotFound(key) from None
            raise
        try:
            return resp.read(), resp.headers.get("Content-Type", "application/octet-stream")
        finally:
            resp.close()
            resp.release_conn()

    async def delete(self, key: str) -> None:
        await self.ensure_bucket()
        await asyncio.to_thread(self._c.remove_object, self._bucket, check_key(key))

    async def url(self, key: str, expires_seconds: int = 3600) -> str:
        # With the region fixed, presigning is an HMAC and no request: cheaper here than a thread hop.
        return self._c.presigned_get_object(self._bucket, check_key(key), expires=dt.timedelta(seconds=expires_seconds))

    async def ping(self) -> None:
        self._ready = False  # a probe must really talk to the server
        await self.ensure_bucket()


def make_blob_store(*, s3_endpoint: str | None, s3_access_key: str, s3_secret_key: str, s3_bucket: str,
                    s3_secure: bool, data_dir: Path) -> BlobStore:
    if s3_endpoint:
        return S3BlobStore(s3_endpoint, s3_access_key, s3_secret_key, s3_bucket, s3_secure)
    return DirectoryBlobStore(data_dir / "blobs")
