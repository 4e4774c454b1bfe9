"""Fails when third_party/googleapis differs from the protos shipped by googleapis-common-protos."""
import pathlib
import sys

import google.api

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENDORED = ROOT / "third_party" / "googleapis"
PACKAGE = pathlib.Path(google.api.__path__[0]).parent.parent


def main() -> int:
    stale = [
        str(p.relative_to(VENDORED))
        for p in sorted(VENDORED.rglob("*.proto"))
        if p.read_bytes() != (PACKAGE / p.relative_to(VENDORED)).read_bytes()
    ]
    if stale:
        print("third_party/googleapis differs from googleapis-common-protos:", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
