"""`petplatform run --target=all|auth|user|pet` and `petplatform migrate`."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import prometheus_client

from mesh import logs, tracing
from mesh.config import SERVICE_PORTS, ConfigError, load_settings
from gateway.edge import Edge
from mesh.runtime import Runtime
from mesh.server import MODULES, Platform

log = logging.getLogger("petplatform")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="petplatform")
    sub = parser.add_subparsers(dest="command", required=True)
    targets = ["all", *MODULES, "edge"]
    run = sub.add_parser("run", help="serve a target")
    run.add_argument("--target", default="all", choices=targets)
    run.add_argument("--port", type=int, help="gRPC port (default: PETPLATFORM_GRPC_PORT for all, else the seed port)")
    run.add_argument("--demo-data", action="store_true", help="load demo users and pets if not loaded yet")
    run.add_argument("--no-migrate", action="store_true", help="skip migrations at start")
    mig = sub.add_parser("migrate", help="bring the databases to the newest schema")
    mig.add_argument("--target", default="all", choices=["all", *MODULES])
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_json)
    try:
        tracing.provider()
    except Exception as e:  # the OpenTelemetry SDK reads OTEL_* itself and raises on bad values
        print(f"OpenTelemetry configuration (OTEL_* variables): {e}", file=sys.stderr)
        return 2

    if args.command == "migrate":
        async def migrate() -> None:
            await Platform(settings, args.target).migrate()
        asyncio.run(migrate())
        log.info("migrated %s", args.target)
        return 0

    if settings.metrics_port is not None:
        prometheus_client.start_http_server(settings.metrics_port, addr=settings.host)
    if args.target == "edge":
        asyncio.run(_serve_edge(settings))
        return 0
    port = args.port if args.port is not None else (
        settings.grpc_port if args.target == "all" else SERVICE_PORTS[args.target])
    asyncio.run(_serve(settings, args.target, port, args.demo_data, not args.no_migrate))
    return 0


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")


async def _serve(settings, target: str, port: int, demo: bool, migrate: bool) -> None:
    platform = Platform(settings, target, port)
    if migrate:
        await platform.migrate()
    await platform.start()
    edge = None
    if target == "all":
        edge = Edge(platform.rt, list(MODULES))
        await edge.start()
    if demo:
        from services.demo import load_demo_data
        await load_demo_data(platform.address, settings.data_dir)
    print(f"Pet Platform ({target}) gRPC on {platform.address} — health and reflection enabled", flush=True)
    if edge:
        print(f"Edge: REST and gRPC-Web on http://{settings.host}:{edge.http_port} (docs: /docs, /openapi.json), "
              f"gRPC pass-through on {settings.host}:{edge.grpc_port}. Ctrl-C stops.", flush=True)
    await _until_signalled()
    if edge:
        await edge.stop()
    await platform.stop()


async def _serve_edge(settings) -> None:
    rt = Runtime(settings, local_services=set())
    edge = Edge(rt, list(MODULES))
    await edge.start()
    print(f"Pet Platform edge: http://{settings.host}:{edge.http_port}, gRPC {settings.host}:{edge.grpc_port}",
          flush=True)
    await _until_signalled()
    await edge.stop()
    await rt.close()


if __name__ == "__main__":
    sys.exit(main())
