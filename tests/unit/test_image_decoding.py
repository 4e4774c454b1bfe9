"""How image decoding (mesh.media) is kept within its memory: the cost of each decode and the budget they share."""
from __future__ import annotations

import io
import threading

from PIL import Image
import pytest

from mesh import media


@pytest.mark.parametrize("fmt, mode, options, per_pixel", [
    ("PNG", "RGBA", {}, 4),
    ("JPEG", "RGB", {}, 4),
    ("JPEG", "RGB", {"progressive": True}, 10),
    ("JPEG", "CMYK", {"progressive": True}, 12),
    ("WEBP", "RGB", {}, 16),
])
def test_every_accepted_photo_fits_the_budget_alone(fmt, mode, options, per_pixel):
    buf = io.BytesIO()
    Image.new(mode, (40, 30)).save(buf, fmt, **options)
    with Image.open(buf) as img:
        assert media.decode_bytes(img) == 40 * 30 * per_pixel
    assert media.MAX_IMAGE_PIXELS * per_pixel <= media.DECODE_BUDGET_BYTES


def test_a_decode_waits_until_its_share_of_the_budget_is_free():
    budget = media.DecodeBudget(10)
    started = threading.Event()

    def decode():
        with budget.take(6):
            started.set()

    with budget.take(6):
        with budget.take(4):  # fits beside the first
            later = threading.Thread(target=decode)
            later.start()
            assert not started.wait(0.2)  # 6 more do not
    later.join(5)
    assert started.is_set() and budget.free == 10
