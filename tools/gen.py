"""Generates the Python stubs of proto/ into ./petplatform (never edited by hand)."""
import pathlib
import shutil
import sys

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "petplatform"
PROTO = ROOT / "proto"
THIRD_PARTY = ROOT / "third_party" / "googleapis"
WELL_KNOWN = pathlib.Path(protoc.__file__).parent / "_proto"


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO}",
        f"-I{THIRD_PARTY}",
        f"-I{WELL_KNOWN}",
        f"--python_out={ROOT}",
        f"--pyi_out={ROOT}",
        f"--grpc_python_out={ROOT}",
        f"--descriptor_set_out={ROOT / 'build' / 'descriptors.binpb'}",
        "--include_imports",
        "--include_source_info",
        *files,
    ]
    (ROOT / "build").mkdir(exist_ok=True)
    if protoc.main(args) != 0:
        return 1
    for d in [OUT, *[p for p in OUT.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
