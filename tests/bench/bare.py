"""The benchmark's baseline: a bare grpc.aio server (no interceptor, health servicer only) in a process of
its own, `python -m tests.bench.bare PORT`. SIGTERM stops it. It runs on asyncio's own loop, as grpc.aio
does out of the box and as issue 8 measured it: uvloop is one of the platform's own levers. BENCH_BARE_LOOP=
uvloop runs it on uvloop too, to compare servers on one loop."""
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
    if os.environ.get("BENCH_BARE_LOOP", "asyncio") == "uvloop":
        import uvloop
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(int(sys.argv[1])))
