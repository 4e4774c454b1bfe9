"""`petplatform run --workers N`: N processes serving the same ports, stopped together."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.run import Ports, drop_real_state, grpc_serving, platform_env
from tests.support import REPO_ROOT


def listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on 127.0.0.1:port (gRPC listens on an IPv4-mapped IPv6 socket)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and local in (f"0100007F:{port:04X}", f"0000000000000000FFFF00000100007F:{port:04X}"):
                inodes.add(inode)
    return inodes


def socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_workers_need_a_shared_bus(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PETPLATFORM_")}
    run = subprocess.run([sys.executable, "-m", "app.cli", "run", "--workers=2"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=60, env={**env, "PETPLATFORM_DATA_DIR": str(tmp_path)})
    assert run.returncode == 2 and "PETPLATFORM_AMQP_URL" in run.stderr


@pytest.mark.real
async def test_two_workers_share_the_ports_and_stop_together(tmp_path, s3_endpoint):
    ports = Ports()
    env = platform_env("real", tmp_path, ports, s3_endpoint)
    parent = subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--target=all", "--workers=2"], cwd=REPO_ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        workers: list[int] = []
        for _ in range(600):  # migrations, then two platforms starting on a busy machine
            assert parent.poll() is None, "the workers stopped"
            workers = children(parent.pid)
            # Each worker opens the services' port before its edge's: wait for all three in both.
            serving = {port: [w for w in workers if listening_inodes(port) & socket_inodes(w)]
                       for port in (ports.grpc, ports.http, ports.edge_grpc)}
            if (len(workers) == 2 and all(s == workers for s in serving.values())
                    and await grpc_serving(f"127.0.0.1:{ports.grpc}")):
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("two workers never listened on the services' and the edge's ports")
        for port in (ports.grpc, ports.http, ports.edge_grpc):
            assert len(listening_inodes(port)) == 2, "one socket each, no more"
        parent.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(parent.wait, 60) == 0, "a clean stop"
        assert not [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in
                    Path(f"/proc/{w}/stat").read_text().split(")")[1].split()[0]], "no worker left running"
        assert not listening_inodes(ports.grpc)
    finally:
        if parent.poll() is None:
            # A failed assertion gets here with everything running: SIGKILL to the parent alone would leave
            # its workers serving (holding PostgreSQL connections) with no one to stop them.
            for w in children(parent.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w, signal.SIGKILL)
            parent.kill()
            parent.wait()
        await drop_real_state(env)


async def test_workers_stop_when_their_parent_is_killed(tmp_path):
    # SIGKILL gives the parent no chance to stop its workers: the kernel must (PR_SET_PDEATHSIG).
    env = platform_env("embedded", tmp_path, Ports(), None)
    parent = subprocess.Popen([sys.executable, "-m", "app.cli", "run", "--target=edge", "--workers=2"], cwd=REPO_ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        for _ in range(600):
            assert parent.poll() is None, "the workers stopped"
            if len(workers := children(parent.pid)) == 2:
                break
            await asyncio.sleep(0.1)
        parent.kill()
        parent.wait()
        for _ in range(600):  # each worker gets SIGTERM and shuts down gracefully
            if not [w for w in workers if running(w)]:
                break
            await asyncio.sleep(0.1)
        assert not [w for w in workers if running(w)], "a worker outlived its parent"
    finally:
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w, signal.SIGKILL)


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie is reaped by init, maybe later)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
