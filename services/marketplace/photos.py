"""Business photos: their content rules (mesh.media's, as pet photos), blob keys and messages."""
from __future__ import annotations

from mesh import errors, media
from mesh.blobs import BlobStore
from mesh.resources import timestamp
from mesh.sql import Row
from petplatform.marketplace.v1 import marketplace_pb2 as m

MAX_PHOTO_BYTES = 5 * 1024 * 1024
MAX_PHOTOS_PER_BUSINESS = 20
PHOTO_TYPE = "marketplace.petplatform.dev/BusinessPhoto"


def check(content: bytes) -> tuple[str, int, int]:
    """(content type, width, height) of an acceptable photo, judged by its bytes. Blocks while it
    waits for its share of the decode budget: run it in media.decoders."""
    checked = media.check_image(content, max_bytes=MAX_PHOTO_BYTES, reason="PHOTO")
    return checked.content_type, checked.width, checked.height


def key(business_id: str, photo_id: str) -> str:
    return f"businesses/{business_id}/photos/{photo_id}"


def too_many() -> errors.ApiError:
    return errors.failed_precondition(f"a business has at most {MAX_PHOTOS_PER_BUSINESS} photos", "TOO_MANY_PHOTOS",
                                      limit=MAX_PHOTOS_PER_BUSINESS)


async def message(blobs: BlobStore, r: Row) -> m.BusinessPhoto:
    k = key(r.business_id, r.id)
    return m.BusinessPhoto(name=k, uri=await blobs.url(k), content_type=r.content_type, size_bytes=r.size_bytes,
                           width=r.width, height=r.height, create_time=timestamp(r.create_time))
