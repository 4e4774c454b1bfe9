"""Adding a service is its proto, its package and one registry entry: the scaffold writes them into
a copy of the repository, and the new service lints, generates, and serves health and reflection."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT as ROOT

SERVE = """
import asyncio, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from app import wiring
from app.registry import REGISTRY
from mesh.config import load_settings

async def main():
    assert "shelter" in REGISTRY.names
    platform = wiring.platform(load_settings(data_dir="data", grpc_port=0), "shelter", port=0)
    await platform.migrate()
    await platform.start()
    async with grpc.aio.insecure_channel(platform.address) as ch:
        reply = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="petplatform.shelter.v1.ShelterService"))
        print("health", reply.status)
    await platform.stop(grace=0)

asyncio.run(main())
"""


def copy_repo(dest: Path) -> None:
    for d in ("app", "mesh", "gateway", "services", "ml", "tools", "proto", "third_party"):
        shutil.copytree(ROOT / d, dest / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "buf.yaml", dest / "buf.yaml")


def run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(cwd), "PATH": str(Path(sys.executable).parent)})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_scaffolded_service_lints_generates_and_serves(tmp_path):
    copy_repo(tmp_path)
    # A name no branch has a contract for (the scaffold would write over one).
    out = run([sys.executable, "-m", "app.cli", "new-service", "shelter", "--port", "3099"], tmp_path)
    assert "services/shelter/module.py" in out and "app/registry.py" in out
    run([str(Path(sys.executable).parent / "buf"), "lint"], tmp_path)
    run([sys.executable, "tools/gen.py"], tmp_path)
    assert "health 1" in run([sys.executable, "-c", SERVE], tmp_path)  # SERVING


def test_the_scaffold_refuses_taken_names_and_ports(tmp_path):
    from app import scaffold
    (tmp_path / "app").mkdir()
    shutil.copy(ROOT / "app" / "registry.py", tmp_path / "app" / "registry.py")
    for name, port, why in (("pet", 3999, "exists"), ("newsvc", 3003, "taken"), ("Bad-Name", 3999, "lower-case"),
                            ("edge", 3999, "lower-case"), ("web", 3999, "lower-case"), ("import", 3999, "lower-case"),
                            ("ok", 3443, "edge")):
        with pytest.raises(scaffold.ScaffoldError, match=why):
            scaffold.create(name, port, root=tmp_path)
