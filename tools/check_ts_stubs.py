"""Fails when the TypeScript stubs (clients/proto-ts/gen, made by `make gen`) are not those of proto/ as it is:
each generated file embeds its contract's descriptor, compared here with build/descriptors.binpb (compiled
from proto/ by the same `make gen`); a contract without its file, or a file without its contract, fails too."""
import base64
import importlib
import pathlib
import re
import sys

from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENDORED = ROOT / "third_party" / "googleapis"
GEN = ROOT / "clients" / "proto-ts" / "gen"
DESCRIPTORS = ROOT / "build" / "descriptors.binpb"
EMBEDDED = re.compile(r'fileDesc\("([A-Za-z0-9+/]+)"')


def comparable(fd: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """What protoc-gen-es embeds: no imports (it links them in code), no comments, json_name only if custom."""
    fd = descriptor_pb2.FileDescriptorProto.FromString(fd.SerializeToString())
    fd.ClearField("source_code_info")
    fd.ClearField("dependency")

    def walk(messages) -> None:
        for m in messages:
            for f in m.field:
                f.ClearField("json_name")
            walk(m.nested_type)
    walk(fd.message_type)
    return fd


def embedded(path: pathlib.Path) -> descriptor_pb2.FileDescriptorProto | None:
    found = EMBEDDED.search(path.read_text())
    if not found:
        return None
    b64 = found.group(1)
    try:
        return comparable(descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(b64 + "=" * (-len(b64) % 4))))
    except (DecodeError, ValueError):
        return None


def main() -> int:
    if not GEN.is_dir() or not DESCRIPTORS.is_file():
        print(f"no TypeScript stubs or descriptors: run `make gen` ({GEN.relative_to(ROOT)}, "
              f"{DESCRIPTORS.relative_to(ROOT)})")
        return 1
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes()).file
    # The Python stubs register the custom options (google.api.http, access...): parsed as extensions, options
    # compare by value, not by the order protoc and protoc-gen-es happened to write their bytes in.
    for fd in files:
        importlib.import_module(fd.name.removesuffix(".proto").replace("/", ".") + "_pb2")
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes()).file
    contracts = {fd.name: comparable(fd) for fd in files
                 if not fd.name.startswith("google/protobuf/")}  # those come with the runtime, @bufbuild/protobuf
    # buf generates every vendored googleapis file, imported by a contract or not (their content is
    # tools/check_vendored.py's business).
    vendored = {str(p.relative_to(VENDORED)) for p in VENDORED.rglob("*.proto")}
    generated = {str(p.relative_to(GEN)).removesuffix("_pb.js") + ".proto": p for p in GEN.rglob("*_pb.js")}
    problems = [f"{name}: no generated file" for name in sorted((contracts.keys() | vendored) - generated.keys())]
    problems += [f"{name}: generated, but no such contract"
                 for name in sorted(generated.keys() - contracts.keys() - vendored)]
    problems += [f"{name}: generated from another version of the contract"
                 for name in sorted(contracts.keys() & generated.keys())
                 if embedded(generated[name]) != contracts[name]]
    if problems:
        print("clients/proto-ts/gen is stale (run `make gen`):", *problems, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
