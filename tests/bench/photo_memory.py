"""Peak memory of parallel photo uploads on the embedded platform (Linux):
`.venv/bin/python -m tests.bench.photo_memory`. Each scenario runs in a fresh process and prints how far
the process's peak RSS (VmHWM) rose above its RSS just before the uploads, and what the uploads got.
A figure, not a test: memory depends on the machine, the allocator and the Pillow build."""
from __future__ import annotations

import asyncio
import collections
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

# name: (parallel uploads, format, size, save options); solid images, so the files stay small.
SCENARIOS = {
    "PNG 6300×6300 RGBA (the issue's 154 KB bomb)": (3, "PNG", (6300, 6300), {}),
    "PNG 4096×4096 RGBA": (6, "PNG", (4096, 4096), {}),
    "JPEG 4032×3024 baseline (12 MP phone photo)": (6, "JPEG", (4032, 3024), {}),
    "JPEG 4096×4096 progressive 4:4:4": (3, "JPEG", (4096, 4096), {"progressive": True, "subsampling": 0}),
    "WebP 4096×4096 lossless": (3, "WEBP", (4096, 4096), {"lossless": True}),
}


def status_kib(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


async def upload(path: Path, count: int) -> dict:
    from petplatform.common.v1 import animal_pb2
    from petplatform.pet.v1 import pet_pb2
    from tests.support.platform import Api, SmtpSink, embedded_settings, start_platform

    smtp = SmtpSink()
    smtp.start()
    with tempfile.TemporaryDirectory() as data:
        platform = await start_platform(embedded_settings(Path(data), smtp))
        api = Api(platform, smtp)
        owner = await api.signup()
        pet = (await api.pet.CreatePet(pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(
            display_name="Big", species=animal_pb2.SPECIES_DOG)), metadata=owner.md)).pet
        content = path.read_bytes()
        Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
        before = status_kib("VmRSS")
        results = await asyncio.gather(*(api.pet.UploadPetPhoto(pet_pb2.UploadPetPhotoRequest(
            parent=pet.name, content=content), metadata=owner.md) for _ in range(count)), return_exceptions=True)
        peak = status_kib("VmHWM")
        await api.channel.close()
        await platform.stop(grace=1)
    smtp.controller.stop()
    outcomes = collections.Counter("OK" if not isinstance(r, Exception) else r.code().name for r in results)
    return {"peak_mib": (peak - before) / 1024, "outcomes": dict(outcomes), "bytes": len(content)}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'scenario':48} {'file':>9} {'uploads':>7} {'peak RSS rise':>14}  outcomes")
        for i, (name, (count, fmt, size, options)) in enumerate(SCENARIOS.items()):
            buf = io.BytesIO()
            Image.new("RGBA" if fmt == "PNG" else "RGB", size, (200, 120, 40)).save(buf, fmt, **options)
            path = Path(tmp) / f"{i}.img"
            path.write_bytes(buf.getvalue())
            out = subprocess.run([sys.executable, "-m", "tests.bench.photo_memory", str(path), str(count)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{name:48} {r['bytes'] // 1024:>6} KB {count:>7} {r['peak_mib']:>10.0f} MiB  {r['outcomes']}")


if __name__ == "__main__":
    if len(sys.argv) == 3:
        print(json.dumps(asyncio.run(upload(Path(sys.argv[1]), int(sys.argv[2])))))
    else:
        main()
