"""`petplatform run --target=all|edge|web|<service>`, `petplatform migrate` and `petplatform new-service`."""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import functools
import gc
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable

import prometheus_client

from app import scaffold, wiring
from app.registry import REGISTRY
from gateway.webapp import WebApp, web_app
from mesh import logs, tracing
from mesh.config import ConfigError, Settings, load_settings
from mesh.registry import peer_addresses
from mesh.runtime import migrate_service

log = logging.getLogger("petplatform")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="petplatform")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve a target")
    run.add_argument("--target", default="all", type=_target(edge=True),
                     help="all, edge, web, or one or more services, comma-separated (served by one process)")
    run.add_argument("--port", type=int, help="gRPC port (default: PETPLATFORM_GRPC_PORT for all, else the seed port)")
    run.add_argument("--demo-data", action="store_true", help="load demo users and pets if not loaded yet")
    run.add_argument("--no-migrate", action="store_true", help="skip migrations at start")
    run.add_argument("--workers", type=int, default=1,
                     help="processes serving the target, sharing its ports (SO_REUSEPORT): one per core")
    mig = sub.add_parser("migrate", help="bring the databases to the newest schema")
    mig.add_argument("--target", default="all", type=_target(edge=False))
    train = sub.add_parser("train", help="train a model on the data so far, publish it and exit")
    train.add_argument("model", choices=["recommender"])
    new = sub.add_parser("new-service", help="create the contract, package and registry entry of a new service")
    new.add_argument("name", help="lower-case service name, e.g. matching")
    new.add_argument("--port", type=int, required=True, help="its seed port")
    args = parser.parse_args(argv)

    if args.command == "new-service":
        try:
            for path in scaffold.create(args.name, args.port):
                print(f"created {path}")
        except scaffold.ScaffoldError as e:
            print(e, file=sys.stderr)
            return 2
        print("next: make gen, then implement its api.py and run make test")
        return 0

    try:
        settings = load_settings()
        peer_addresses(REGISTRY.ports, settings.host, os.environ)  # a misspelt PETPLATFORM_*_ADDR stops here
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
        asyncio.run(wiring.platform(settings, args.target).migrate())
        log.info("migrated %s", args.target)
        return 0

    if args.command == "train":
        return asyncio.run(_train(settings))

    if args.workers < 1:
        print("--workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1:
        return _run_workers(args, settings)
    if settings.metrics_port is not None:
        prometheus_client.start_http_server(settings.metrics_port, addr=settings.host)
    with asyncio.Runner(loop_factory=_loop_factory(settings)) as runner:
        if args.target == "edge":
            runner.run(_serve_edge(settings))
            return 0
        if args.target == "web":
            return runner.run(_serve_web(settings))
        port = args.port if args.port is not None else (
            settings.grpc_port if args.target == "all" or "," in args.target else REGISTRY[args.target].port)
        runner.run(_serve(settings, args.target, port, args.demo_data, not args.no_migrate))
    return 0


def _target(*, edge: bool) -> Callable[[str], str]:
    def check(value: str) -> str:
        if edge and value in ("edge", "web"):
            return value
        try:
            REGISTRY.target(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value
    return check


def _loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """PETPLATFORM_EVENT_LOOP: uvloop (the default) or asyncio's own loop (None)."""
    if settings.event_loop == "asyncio":
        return None
    import uvloop
    return uvloop.new_event_loop


def _die_with_parent(parent: int) -> None:
    """In each worker, before it runs: the kernel sends it SIGTERM when the parent dies, even by SIGKILL,
    so no worker is left serving (and holding database connections) with no one to stop it."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(1)


def _run_workers(args: argparse.Namespace, settings: Settings) -> int:
    """`run --workers N`: migrations once, then N processes serving the target on the same ports (the kernel
    spreads connections over them); SIGINT or SIGTERM stops them all, as does the death of one."""
    if args.target not in ("edge", "web") and not settings.amqp_url:
        # Each worker would have its own in-process bus: watch streams and read caches would miss the
        # changes made through the other workers.
        print("--workers above 1 needs a shared bus: set PETPLATFORM_AMQP_URL", file=sys.stderr)
        return 2
    if settings.metrics_port is not None:
        print("--workers above 1 cannot share PETPLATFORM_METRICS_PORT: leave it unset", file=sys.stderr)
        return 2
    ports = [settings.http_port, settings.edge_grpc_port] if args.target in ("all", "edge") else []
    if args.target in ("all", "web"):
        ports.append(settings.web_port)
    if args.target not in ("edge", "web"):
        ports.append(args.port if args.port is not None else (
            settings.grpc_port if args.target == "all" or "," in args.target else REGISTRY[args.target].port))
    if 0 in ports:
        print("--workers above 1 needs fixed ports (0 would give each worker its own)", file=sys.stderr)
        return 2
    if args.target not in ("edge", "web") and not args.no_migrate:
        asyncio.run(wiring.platform(settings, args.target).migrate())
    command = [sys.executable, "-m", "app.cli", "run", f"--target={args.target}", "--no-migrate"]
    if args.port is not None:
        command.append(f"--port={args.port}")
    env = {**os.environ, "PETPLATFORM_REUSE_PORT": "true"}
    workers = [subprocess.Popen(command + (["--demo-data"] if args.demo_data and i == 0 else []), env=env,
                                preexec_fn=functools.partial(_die_with_parent, os.getpid()))
               for i in range(args.workers)]
    stopping = False

    def stop(_signum: int = 0, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    log.info("%d workers: %s", len(workers), ", ".join(str(w.pid) for w in workers))
    failed = False
    while any(w.poll() is None for w in workers):
        for w in workers:
            try:
                code = w.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
            if code and not stopping:  # one died: the others stop too, and so does the whole
                log.error("worker %d exited with %d: stopping the others", w.pid, code)
                failed = True
                stop()
    return 1 if failed or any(w.returncode for w in workers) else 0


async def _train(settings: Settings) -> int:
    """Trains the recommender from its database and publishes the artefact; running replicas take it up
    at their next training tick (PETPLATFORM_RECOMMENDER_TRAIN_SECONDS)."""
    from ml.recommender.engine import Engine
    spec = REGISTRY["recommender"]
    migrations = spec.load().migrations
    assert migrations is not None
    rt = wiring.runtime(settings)  # for its database and blob store: nothing of it is started
    db = rt.database(spec.name)
    try:
        await migrate_service(db, migrations)
        model = await Engine(db, rt.blobs).train()
    finally:
        await db.dispose()
        await rt.close()
    if model is None:
        print("recommender: no likes, matches or adoptions yet; nothing to train on", flush=True)
        return 0
    print(f"recommender: published {model.version} ({model.interactions} interactions, {len(model.pets)} pets)",
          flush=True)
    return 0


def freeze_startup_heap() -> None:
    """Once serving: what startup made (modules, contracts' descriptors, models, ~300k objects) lives as long as
    the process, yet each full collection walked all of it again, ~0.2 s holding the GIL (every call in flight
    waited). Its garbage collected first, it is left out of later collections (gc.freeze)."""
    gc.collect()
    gc.freeze()


def _stop_on_signals() -> asyncio.Event:
    """Set by SIGINT or SIGTERM from now on."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _until_signalled(stop: asyncio.Event | None = None) -> None:
    await (stop or _stop_on_signals()).wait()
    log.info("shutting down")


async def _serve(settings: Settings, target: str, port: int, demo: bool, migrate: bool) -> None:
    platform = wiring.platform(settings, target, port=port)
    if migrate:
        await platform.migrate()
    await platform.start()
    edge = None
    web: WebApp | None = None
    if target == "all":
        edge = wiring.edge(platform.rt)
        await edge.start()
        if web := web_app(settings, edge.http_port):
            await web.start()
    if demo:
        from app.demo import load_demo_data
        await load_demo_data(platform.address, settings.data_dir)
    print(f"Pet Platform ({target}) gRPC on {platform.address} — health and reflection enabled", flush=True)
    if edge:
        print(f"Edge: REST and gRPC-Web on http://{settings.host}:{edge.http_port} (docs: /docs, /openapi.json, "
              f"/asyncapi.json), gRPC pass-through on {settings.host}:{edge.grpc_port}. Ctrl-C stops.", flush=True)
    if web:
        print(f"Web app: http://{settings.host}:{web.port}", flush=True)
    freeze_startup_heap()
    await _until_signalled()
    if web:
        await web.stop()
    if edge:
        await edge.stop()
    await platform.stop()


async def _serve_web(settings: Settings) -> int:
    """`run --target=web`: the web app alone (its own Deployment), calling the edge at PETPLATFORM_WEB_EDGE_URL,
    else at the edge's port on the page's host."""
    web = web_app(settings, settings.http_port)
    if web is None:
        print(f"no web app to serve: {settings.web_dir} has no index.html (run `make web`)", file=sys.stderr)
        return 2
    stop = _stop_on_signals()  # before serving: a SIGTERM as soon as it answers still stops it cleanly
    await web.start()
    print(f"Pet Platform web app: http://{settings.host}:{web.port}", flush=True)
    await _until_signalled(stop)
    await web.stop()
    return 0


async def _serve_edge(settings: Settings) -> None:
    rt = wiring.runtime(settings)  # the edge needs no bus: nothing of it is started
    edge = wiring.edge(rt)
    await edge.start()
    print(f"Pet Platform edge: http://{settings.host}:{edge.http_port}, gRPC {settings.host}:{edge.grpc_port}",
          flush=True)
    freeze_startup_heap()
    await _until_signalled()
    await edge.stop()
    await rt.close()


if __name__ == "__main__":
    sys.exit(main())
