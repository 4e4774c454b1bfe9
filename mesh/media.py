"""Uploaded content judged by its bytes, never by a name or a declared type: images (JPEG, PNG, WebP),
decoded within a memory budget every service of the process shares, and a few kinds of short file.
The one content checker: pet photos and chat attachments both go through it. The checks block (an
image is decoded): run them in `decoders`."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from PIL import Image, UnidentifiedImageError

from mesh import errors

# A few bytes can claim many pixels (6300×6300 fits in 154 KB of PNG): 16 MP, room for a 12 MP phone
# photo, is checked from the header before anything is decoded.
MAX_IMAGE_PIXELS = 4096 * 4096
# Decoding takes far more memory than the upload, and its share depends on the format (decode_bytes).
# At most DECODERS decodes run at once, and together they hold at most DECODE_BUDGET_BYTES, exactly
# what the costliest accepted image needs (so it runs alone); the others wait their turn.
DECODERS = 2
WORST_BYTES_PER_PIXEL = 16
DECODE_BUDGET_BYTES = MAX_IMAGE_PIXELS * WORST_BYTES_PER_PIXEL  # 256 MiB
decoders = ThreadPoolExecutor(DECODERS, thread_name_prefix="image-decode")
IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
PDF = "application/pdf"
TEXT = "text/plain"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Checked:
    content_type: str  # what the bytes are, whatever was declared
    width: int = 0  # images only
    height: int = 0


def decode_bytes(img: Image.Image) -> int:
    """The most memory decoding `img` takes, measured with Pillow 13 (tests/bench/photo_memory.py): 4 bytes a
    pixel; 2 more a band for the coefficients a progressive JPEG keeps; 16 for WebP, whose decoder keeps
    two canvases and hands Pillow a copy."""
    per_pixel = 4
    if img.format == "WEBP":
        per_pixel = WORST_BYTES_PER_PIXEL
    elif img.format == "JPEG" and img.info.get("progressive"):
        per_pixel += 2 * len(img.getbands())
    return img.width * img.height * per_pixel


class DecodeBudget:
    """Bytes the decoding threads may hold together: a decode waits until its share is free."""

    def __init__(self, total: int):
        self.free = total
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def take(self, size: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self.free >= size)
            self.free -= size
        try:
            yield
        finally:
            with self._changed:
                self.free += size
                self._changed.notify_all()


decode_budget = DecodeBudget(DECODE_BUDGET_BYTES)


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


def check_image(content: bytes, *, max_bytes: int, field: str = "content", reason: str = "PHOTO") -> Checked:
    """An acceptable image: at most `max_bytes` and MAX_IMAGE_PIXELS, a JPEG, PNG or WebP that decodes
    whole. Refusals are INVALID_ARGUMENT on `field` with reason `{reason}_TOO_LARGE`, `_TYPE` or `_INVALID`.
    Blocks while it waits for its share of the decode budget."""
    def too_many_pixels(detail: str) -> errors.ApiError:
        return errors.invalid_argument(
            (field, f"{detail}; at most {MAX_IMAGE_PIXELS:,} pixels (4096×4096) are accepted: scale it down"),
            reason=f"{reason}_TOO_LARGE")
    if len(content) > max_bytes:
        raise errors.invalid_argument((field, f"image is larger than {_mib(max_bytes)}"), reason=f"{reason}_TOO_LARGE")
    try:
        with Image.open(io.BytesIO(content)) as img:  # reads the header, decodes nothing
            kind, (width, height) = img.format, img.size
            if kind not in IMAGE_TYPES:
                raise errors.invalid_argument((field, f"{kind} images are not accepted; use JPEG, PNG or WebP"),
                                              reason=f"{reason}_TYPE")
            if width * height > MAX_IMAGE_PIXELS:
                raise too_many_pixels(f"image is {width}×{height} pixels")
            cost = decode_bytes(img)
            img.verify()
        with decode_budget.take(cost), Image.open(io.BytesIO(content)) as img:
            img.load()  # verify() misses truncated pixel data; decoding it does not
    except errors.ApiError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard, far above ours, trips inside open() before we see the size (the warning
        # only where warnings are errors).
        raise too_many_pixels("image has far too many pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise errors.invalid_argument((field, "not a valid JPEG, PNG or WebP image"),
                                      reason=f"{reason}_INVALID") from None
    return Checked(content_type=IMAGE_TYPES[kind], width=width, height=height)


def sniff(content: bytes) -> str | None:
    """The type the bytes say they are (by their magic numbers; text: UTF-8 without control characters
    but tab and line breaks), or None for anything else."""
    if content.startswith(b"\xff\xd8\xff"):
        return IMAGE_TYPES["JPEG"]
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return IMAGE_TYPES["PNG"]
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return IMAGE_TYPES["WEBP"]
    if content.startswith(b"%PDF-"):
        return PDF
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return TEXT if text and all(c >= " " or c in "\t\r\n" for c in text) else None


def check_file(content: bytes, *, declared: str, max_image_bytes: int, max_file_bytes: int,
               field: str = "content", reason: str = "ATTACHMENT") -> Checked:
    """An image (as check_image), a PDF or a plain-text file, whose declared type (a MIME type; its
    parameters ignored) names what the bytes are: a file declared an image that is not one is refused
    (`{reason}_TYPE_MISMATCH`), as is any other kind of content (`{reason}_TYPE`). Blocks like check_image."""
    if len(content) > max(max_image_bytes, max_file_bytes):
        raise errors.invalid_argument((field, f"larger than {_mib(max(max_image_bytes, max_file_bytes))}"),
                                      reason=f"{reason}_TOO_LARGE")
    kind = sniff(content)
    if kind is None:
        raise errors.invalid_argument((field, "not an accepted kind of file: JPEG, PNG or WebP images, PDF, "
                                              "plain UTF-8 text"), reason=f"{reason}_TYPE")
    said = declared.split(";", 1)[0].strip().lower()
    if said != kind:
        raise errors.invalid_argument((field, f"declared {said or 'nothing'} but the content is {kind}"),
                                      reason=f"{reason}_TYPE_MISMATCH")
    if kind in IMAGE_TYPES.values():
        return check_image(content, max_bytes=max_image_bytes, field=field, reason=reason)
    if len(content) > max_file_bytes:
        raise errors.invalid_argument((field, f"a file other than an image is at most {_mib(max_file_bytes)}"),
                                      reason=f"{reason}_TOO_LARGE")
    if kind == PDF and b"%%EOF" not in content[-1024:]:
        raise errors.invalid_argument((field, "not a whole PDF (no end-of-file marker)"), reason=f"{reason}_INVALID")
    return Checked(content_type=kind)
