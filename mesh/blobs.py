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

from minio import Minio
from minio.error import S3Error


class BlobNotFound(KeyError):
    pass


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...
    async def get(self, key: str) -> tuple[bytes, str]: ...
    async def delete(self, key: str) -> None: ...
    async def url(self, key: str, expires_seconds: int = 3600) -> str: ...
    async def ping(self) -> None: ...


class DirectoryBlobStore:
    def __init__(self, root: Path, public_base: str = "/v1/blobs"):
        self._root = root.resolve()
        self._public = public_base

    def _path(self, key: str) -> Path:
        path = (self._root / key).resolve()
        if not key or os.path.isabs(key) or self._root not in path.parents:
            raise ValueError(f"invalid blob key {key!r}")
        return path

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        await asyncio.to_thread(self._write, path, data, content_type)

    @staticmethod
    def _write(path: Path, data: bytes, content_type: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, payload in ((path, data), (path.with_name(path.name + ".meta"),
                                               json.dumps({"content_type": content_type}).encode())):
            fd, tmp = tempfile.mkstemp(dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            os.replace(tmp, target)  # readers never see half a file

    async def get(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        try:
            data = await asyncio.to_thread(path.read_bytes)
            meta = json.loads(await asyncio.to_thread(path.with_name(path.name + ".meta").read_text))
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        return data, meta["content_type"]

    async def delete(self, key: str) -> None:
        path = self._path(key)
        for p in (path, path.with_name(path.name + ".meta")):
            p.unlink(missing_ok=True)

    async def url(self, key: str, expires_seconds: int = 3600) -> str:
        self._path(key)
        return f"{self._public}/{key}"

    async def ping(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)


class S3BlobStore:
    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, secure: bool,
                 region: str = "us-east-1"):
        self._c = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region)
        self._bucket = bucket
        self._ready = False

    async def _ensure_bucket(self) -> None:
        if not self._ready:
            if not await asyncio.to_thread(self._c.bucket_exists, self._bucket):
                try:
                    await asyncio.to_thread(self._c.make_bucket, self._bucket)
                except S3Error as e:
                    if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
            self._ready = True

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self._ensure_bucket()
        await asyncio.to_thread(self._c.put_object, self._bucket, key, io.BytesIO(data), len(data),
                                content_type=content_type)

    async def get(self, key: str) -> tuple[bytes, str]:
        await self._ensure_bucket()

        def fetch() -> tuple[bytes, str]:
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
        return await asyncio.to_thread(fetch)

    async def delete(self, key: str) -> None:
        await self._ensure_bucket()
        await asyncio.to_thread(self._c.remove_object, self._bucket, key)

    async def url(self, key: str, expires_seconds: int = 3600) -> str:
        return await asyncio.to_thread(self._c.presigned_get_object, self._bucket, key,
                                       expires=dt.timedelta(seconds=expires_seconds))

    async def ping(self) -> None:
        await self._ensure_bucket()


def make_blob_store(*, s3_endpoint: str | None, s3_access_key: str, s3_secret_key: str, s3_bucket: str,
                    s3_secure: bool, data_dir: Path) -> BlobStore:
    if s3_endpoint:
        return S3BlobStore(s3_endpoint, s3_access_key, s3_secret_key, s3_bucket, s3_secure)
    return DirectoryBlobStore(data_dir / "blobs")
