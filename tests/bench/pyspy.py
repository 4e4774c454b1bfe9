"""Sums py-spy's collapsed stacks (`BENCH_PYSPY=DIR make bench...`): `python -m tests.bench.pyspy FILE...` prints,
per file, the share of samples spent in each part of the stack (inclusive: a sample counts for every part on its
stack), then the hottest leaf functions."""
from __future__ import annotations

import collections
import sys
from pathlib import Path

# (label, what a frame's text contains): the parts of a call worth telling apart.
PARTS = [
    ("event loop thread", "MainThread"),
    ("other threads", "THREAD!"),
    ("interceptor (mesh/interceptor.py)", "mesh/interceptor.py"),
    ("OpenTelemetry", "opentelemetry"),
    ("structlog", "structlog"),
    ("prometheus_client", "prometheus_client"),
    ("SQLAlchemy", "sqlalchemy"),
    ("aiosqlite", "aiosqlite"),
    ("asyncpg", "asyncpg"),
    ("pet service (services/pet)", "services/pet"),
    ("edge (gateway/)", "gateway/"),
    ("aiohttp", "aiohttp"),
    ("protobuf / json_format", "protobuf"),
    ("grpc (python + cython)", "grpc"),
    ("asyncio", "asyncio/"),
]


def summarize(path: Path, top: int = 15) -> str:
    parts: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        main = any("MainThread" in f for f in frames[:3])
        for label, needle in PARTS:
            if needle == "THREAD!":
                hit = not main
            else:
                hit = any(needle in f for f in frames)
            if hit:
                parts[label] += n
        leaves[frames[-1].strip()] += n
    if not total:
        return f"{path.name}: no samples"
    out = [f"{path.name}: {total} samples"]
    out += [f"  {parts[label] / total:6.1%}  {label}" for label, _ in PARTS]
    out.append("  hottest leaves:")
    out += [f"  {n / total:6.1%}  {leaf}" for leaf, n in leaves.most_common(top)]
    return "\n".join(out)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(summarize(Path(name)))
