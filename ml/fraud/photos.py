"""Perceptual hashes of listing photos (pHash, 64 bits: a resized or re-encoded copy is a few bits off).

The photos are read through the blob port under their resource names (`pets/{pet}/photos/{photo}`, the
key the pet service stores them at): they are public content, served to anyone by the edge's blob route,
so reading them here needs no more trust than a visitor has. It does rely on the pet service's key
scheme; a pet service on another bucket would need its photos' URIs fetched instead."""
from __future__ import annotations

import asyncio
import io
import logging

import imagehash
from PIL import Image

from mesh.blobs import BlobNotFound, BlobStore

log = logging.getLogger(__name__)


def phash(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as image:
        return int(str(imagehash.phash(image)), 16)


async def phash_of(blobs: BlobStore, key: str) -> int | None:
    """The photo's hash; None when it is gone (deleted since the event) or cannot be decoded."""
    try:
        data, _ = await blobs.get(key)
    except BlobNotFound:
        return None
    try:
        return await asyncio.to_thread(phash, data)
    except Exception:  # the pet service checked it was an image; a blob that is not is skipped, not retried
        log.warning("fraud: could not hash photo %s", key, exc_info=True)
        return None
