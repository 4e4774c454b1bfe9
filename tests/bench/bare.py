"""The benchmark's baseline: a bare grpc.aio server (no interceptor, health servicer only) in a process of
its own, `python -m tests.bench.bare PORT`, on the platform's event loop (uvloop, or BENCH_EVENT_LOOP's) so the
ratio compares servers, not loops. SIGTERM stops it."""
from __future__ import annotations

import asyncio
import os
import signal
import sys

import grpc
from grpc_health.v1 import health, health_pb2_grpc


async def serve(port: int) -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)  # SERVING by default
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=1)


if __name__ == "__main__":
    factory = None
    if os.environ.get("BENCH_EVENT_LOOP", "uvloop") == "uvloop":  # PETPLATFORM_EVENT_LOOP's default
        import uvloop
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(int(sys.argv[1])))
