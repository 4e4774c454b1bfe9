"""Shared fixtures: an in-process platform (embedded or real profile), a local SMTP sink, a local S3.
The helpers they are built from live in tests/support/."""
from __future__ import annotations

import asyncio
import gc
import json
import os
import threading
import time
from collections import Counter

import aiohttp.web_app
import pytest

from tests.support.platform import (
    Api, EdgeClient, SmtpSink, drop_real_state, embedded_settings, real_settings, start_edge, start_platform,
)


@pytest.fixture(scope="session")
def smtp_sink():
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.controller.stop()


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server: the local stand-in for MinIO."""
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
async def api(tmp_path_factory, smtp_sink):
    """The whole platform, embedded profile, one per test module."""
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink))
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    await platform.stop(grace=1)


@pytest.fixture(scope="module")
async def edge(tmp_path_factory, smtp_sink):
    """Platform + edge, embedded profile, one per test module."""
    import aiohttp
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink))
    e = await start_edge(platform)
    api = Api(platform, smtp_sink)
    async with aiohttp.ClientSession() as http:
        yield EdgeClient(api, e, http)
    await api.channel.close()
    await e.stop(grace=1)
    await platform.stop(grace=1)


@pytest.fixture(scope="module")
async def real_api(tmp_path_factory, smtp_sink, s3_endpoint):
    """The whole platform on the real PostgreSQL, RabbitMQ and Redis (they must be running)."""
    settings = real_settings(tmp_path_factory.mktemp("data"), smtp_sink, s3_endpoint)
    platform = await start_platform(settings)
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    consumers = list(getattr(platform.rt.bus, "consumers", []))
    await platform.stop(grace=1)
    await drop_real_state(settings, consumers)


# --- After each test module: what it left running ---------------------------------------------------------
# Every module stops what it started: a task still pending once its fixtures are torn down runs on into the
# next modules, on a stopped platform (an inbox writer on a disposed engine did). LEAK_REPORT=<file> also
# writes one JSON line per module (threads, tasks, fds, CPU, gc pauses, objects, the CPU burnt while idle).
_LOOP: list[asyncio.AbstractEventLoop] = []


@pytest.fixture(scope="session", autouse=True)
async def _session_loop():
    _LOOP.append(asyncio.get_running_loop())
    yield


def _pending_tasks() -> list[str]:
    loop = _LOOP[0] if _LOOP and not _LOOP[0].is_closed() else None
    if loop is None:
        return []
    return sorted(f"{t.get_name()}:{getattr(t.get_coro(), '__qualname__', t.get_coro())}"
                  for t in asyncio.all_tasks(loop))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    if nextitem is not None and nextitem.module is item.module:
        return result
    # aiohttp keeps every application it served in a module-level cache (1024 entries): each edge the
    # suite starts would stay alive, with its runtime and servers, for the rest of the run.
    aiohttp.web_app._cached_build_middleware.cache_clear()
    if path := os.environ.get("LEAK_REPORT"):
        _report(path, item.module.__name__)
    if leaked := _pending_tasks():
        raise AssertionError(f"{item.module.__name__} left tasks running: {leaked}")
    return result


_WATCHED = ("Platform", "Edge", "Runtime", "Database", "AsyncEngine", "Channel", "Server")
_MODULE: dict = {}
_GC = {"start": 0.0, "total": 0.0, "max": 0.0, "gen2": 0}


def _gc_timer(phase: str, info: dict) -> None:
    if phase == "start":
        _GC["start"] = time.perf_counter()
    else:
        took = time.perf_counter() - _GC["start"]
        _GC.update(total=_GC["total"] + took, max=max(_GC["max"], took), gen2=_GC["gen2"] + (info["generation"] == 2))


def pytest_runtest_setup(item):
    if os.environ.get("LEAK_REPORT") and _MODULE.get("name") != item.module.__name__:
        if _gc_timer not in gc.callbacks:
            gc.callbacks.append(_gc_timer)
        _MODULE.update(name=item.module.__name__, wall=time.monotonic(), cpu=time.process_time())
        _GC.update(total=0.0, max=0.0, gen2=0)


def _report(path: str, module: str) -> None:
    wall, cpu = time.monotonic() - _MODULE.get("wall", 0), time.process_time() - _MODULE.get("cpu", 0)
    gc_pauses = {"gc_total": round(_GC["total"], 3), "gc_max": round(_GC["max"], 3), "gc_gen2": _GC["gen2"]}
    gc.collect()
    objects = gc.get_objects()
    kinds = Counter(type(o).__name__ for o in objects)
    # The idle cost: CPU burnt while the loop turns for 0.5 s with no test running.
    loop = _LOOP[0] if _LOOP and not _LOOP[0].is_closed() else None
    t0, c0 = time.monotonic(), time.process_time()
    if loop:
        loop.run_until_complete(asyncio.sleep(0.5))
    idle = (time.process_time() - c0) / (time.monotonic() - t0)
    record = {"module": module, "wall": round(wall, 2), "cpu": round(cpu, 2), "idle_cpu_per_s": round(idle, 3),
              **gc_pauses, "threads": sorted(t.name for t in threading.enumerate()),
              "os_threads": len(os.listdir("/proc/self/task")), "fds": len(os.listdir("/proc/self/fd")),
              "tasks": _pending_tasks(), "timers": len(getattr(loop, "_scheduled", ())), "objects": len(objects),
              "kinds": {k: kinds[k] for k in _WATCHED if kinds[k]}}
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
