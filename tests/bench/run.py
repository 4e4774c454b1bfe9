"""`make bench`: requests/s, p50 and p99 of the platform's hot calls, embedded and real profiles, as ratios
to a bare grpc.aio server measured in the same run (issue 8).

Three kinds of process: this one is the load generator; the platform (every service and the edge) runs as
`make up` runs it, `python -m app.cli run --target=all`; the baseline, a grpc.aio server with the health
servicer only and no interceptor, is tests/bench/bare.py. BENCH_SECONDS (default 5) per case,
BENCH_CONCURRENCY (default 64) calls in flight; `make bench-short` (1 s per case) checks the bench still runs.
Any failed call makes the run exit non-zero. The real profile runs again as `run --workers 2` (BENCH_WORKERS=N;
1: not again), rows labelled real-2w, each worker a process of its own (the bare baseline stays one process).

For working on a profile: BENCH_PROFILES=embedded (or real) runs one profile; BENCH_CASES=word,word only the
cases whose name holds one of the words (the baselines always run); BENCH_PYSPY=DIR records each measured case
of the platform process with py-spy into DIR/<profile>-<case>.txt (collapsed stacks: tests/bench/pyspy.py sums
them; the own-process edge rows record the edge's process, whose share of the CPU they also print);
BENCH_EVENT_LOOP=asyncio (or uvloop) the platform's event loop; BENCH_BARE_LOOP=uvloop the baseline's (default:
asyncio's own, as grpc.aio runs out of the box)."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
from google.type import latlng_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from app.registry import REGISTRY
from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc
from petplatform.common.v1 import animal_pb2
from petplatform.pet.v1 import pet_pb2, pet_pb2_grpc
from tests.bench import marketplace
from tests.support.platform import AMQP_URL, PASSWORD, POSTGRES_URL, REDIS_URL

DURATION = float(os.environ.get("BENCH_SECONDS", "5"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "64"))
WATCHERS = int(os.environ.get("BENCH_WATCHERS", "50"))
CHANGES = 20
PETS = 200
READY_SECONDS = 120  # migrations on a busy machine
PYSPY_DIR = os.environ.get("BENCH_PYSPY")
CASES = [w for w in os.environ.get("BENCH_CASES", "").split(",") if w]
PROFILES = os.environ.get("BENCH_PROFILES", "embedded,real").split(",")
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))  # the real profile once more with `run --workers N`
BARE_PID: list[int] = []  # the baseline's process, for its CPU per call
EVENT_LOOP = os.environ.get("BENCH_EVENT_LOOP")  # the platform's PETPLATFORM_EVENT_LOOP (default: its own)


@dataclass
class Result:
    rps: float
    p50: float  # ms
    p99: float  # ms
    n: int
    errors: int = 0
    first_error: str = ""
    cpu_ms: float = float("nan")  # CPU (user + system) of the serving process(es) per call, in ms
    edge_cpu_ms: float = float("nan")  # of that, the own-process edge's (SPLIT_* rows)


def summary(latencies: list[float], elapsed: float, errors: int = 0, first_error: str = "") -> Result:
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return Result(len(latencies) / elapsed, q[49] * 1000, q[98] * 1000, len(latencies), errors, first_error)


async def measure(call: Callable[[], Awaitable[object]], duration: float = DURATION,
                  concurrency: int = CONCURRENCY) -> Result:
    """`concurrency` callers repeating `call` for `duration` seconds; a failed call is counted, not timed."""
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + duration

    async def worker():
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                await call()
            except Exception as e:  # reported with the row; the run then fails
                errors.append(describe(e))
                continue
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return summary(latencies, time.perf_counter() - start, len(errors), errors[0] if errors else "")


def describe(e: Exception) -> str:
    if isinstance(e, grpc.aio.AioRpcError):
        return f"{e.code().name}: {e.details()}"
    return f"{type(e).__name__}: {e}"


async def watch_fanout(pets: pet_pb2_grpc.PetServiceStub, md: tuple, owner: str,
                       open_watch: Callable[[str], Awaitable[AsyncIterator[str]]],
                       watchers: int = WATCHERS, changes: int = CHANGES) -> Result:
    """Delivery latency of WatchPets: from an UpdatePet call to each of `watchers` streams seeing it.
    open_watch(owner) returns an async iterator of changed descriptions, once the stream is open."""
    pet = (await pets.CreatePet(pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(
        display_name="Watched", species=animal_pb2.SPECIES_CAT)), metadata=md)).pet
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    streams = [await open_watch(owner) for _ in range(watchers)]

    async def consume(stream):
        async for description in stream:
            if description in sent_at:
                latencies.append(time.perf_counter() - sent_at[description])

    tasks = [asyncio.create_task(consume(st)) for st in streams]
    start = time.perf_counter()
    for k in range(changes):
        pet.description = f"change {k}"
        sent_at[pet.description] = time.perf_counter()
        await pets.UpdatePet(pet_pb2.UpdatePetRequest(pet=pet, update_mask={"paths": ["description"]}), metadata=md)
        await asyncio.sleep(0.05)
    for _ in range(200):
        if len(latencies) >= watchers * changes:
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    for t in tasks:
        t.cancel()
    failures = [r for r in await asyncio.gather(*tasks, return_exceptions=True)
                if isinstance(r, Exception) and not isinstance(r, asyncio.CancelledError)]
    missing = watchers * changes - len(latencies)
    first = describe(failures[0]) if failures else f"{missing} of {watchers * changes} changes not delivered"
    return summary(latencies, elapsed, missing, first if missing else "")


def grpc_web_frame(msg) -> bytes:
    data = msg.SerializeToString()
    return struct.pack(">BI", 0, len(data)) + data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BenchError(Exception):
    pass


def spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT)


@contextlib.asynccontextmanager
async def process(name: str, args: list[str], env: dict[str, str], log_dir: Path,
                  ready: Callable[[], Awaitable[bool]]) -> AsyncIterator[subprocess.Popen]:
    """A child process, once ready() says so; SIGTERM (then SIGKILL) on the way out. Its output goes to a file,
    shown if it dies or never gets ready."""
    log_path = log_dir / f"{name}.log"
    proc = spawn(args, env, log_path)

    def failed(why: str) -> BenchError:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        return BenchError(f"{name} {why}; its last output:\n{tail}")

    try:
        for _ in range(int(READY_SECONDS / 0.2)):
            if proc.poll() is not None:
                raise failed(f"exited with {proc.returncode} before it was ready")
            if await ready():
                break
            await asyncio.sleep(0.2)
        else:
            raise failed(f"not ready after {READY_SECONDS}s")
        yield proc
        if proc.poll() is not None:
            raise failed(f"exited with {proc.returncode} during the run")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)


@contextlib.asynccontextmanager
async def pyspy(pid: int | None, name: str) -> AsyncIterator[None]:
    """py-spy recording `pid` for the block, when BENCH_PYSPY is set (nonblocking: the target is not paused)."""
    if not PYSPY_DIR or pid is None:
        yield
        return
    out = Path(PYSPY_DIR) / (name.replace(" ", "_").replace("/", "_") + ".txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    # BENCH_PYSPY_GIL=1: only samples holding the GIL. uvloop waits in epoll with it released, so idle time
    # (which py-spy does not always tell from work: suspended awaits showed as busy) drops out.
    gil = ["--gil"] if os.environ.get("BENCH_PYSPY_GIL") else []
    spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--format",
                            "raw", "--threads", "--nonblocking", *gil, "--rate", "200", "--output", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await asyncio.sleep(0.5)  # attached
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        await asyncio.to_thread(spy.wait, 30)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def settle(pid: int, timeout: float = 20) -> None:
    """Until the process is (nearly) idle: the seed's events, emails and outbox rows are handled before
    anything is measured, so they do not run during a case (the baseline's above all)."""
    for _ in range(int(timeout / 0.5)):
        before = cpu_seconds(pid)
        await asyncio.sleep(0.5)
        if cpu_seconds(pid) - before < 0.05:
            return


async def grpc_serving(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as ch:
        try:
            r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.aio.AioRpcError:
            return False
        return r.status == health_pb2.HealthCheckResponse.SERVING


def http_ready(http: aiohttp.ClientSession, url: str) -> Callable[[], Awaitable[bool]]:
    async def ready() -> bool:
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=3)) as r:
                return r.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False
    return ready


@dataclass
class Ports:
    grpc: int = field(default_factory=free_port)
    http: int = field(default_factory=free_port)
    edge_grpc: int = field(default_factory=free_port)
    web: int = field(default_factory=free_port)  # fixed, not 0: `run --workers N` shares it (3100 may be taken)


def platform_env(profile: str, data_dir: Path, ports: Ports, s3_endpoint: str | None) -> dict[str, str]:
    """The environment `make up` would run with, limits lifted, on free ports; nothing inherited of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PETPLATFORM_")}
    env.update({
        "PETPLATFORM_DATA_DIR": str(data_dir), "PETPLATFORM_GRPC_PORT": str(ports.grpc),
        "PETPLATFORM_HTTP_PORT": str(ports.http), "PETPLATFORM_EDGE_GRPC_PORT": str(ports.edge_grpc),
        "PETPLATFORM_WEB_PORT": str(ports.web),
        "PETPLATFORM_RATE_LIMIT_PER_MINUTE": "1000000000", "PETPLATFORM_MAX_STREAMS_PER_CLIENT": "1000000",
        "PETPLATFORM_MAX_STREAMS_PER_CALLER": "1000000", "PETPLATFORM_LOG_LEVEL": "warning",
    })
    if EVENT_LOOP:
        env["PETPLATFORM_EVENT_LOOP"] = EVENT_LOOP
    if profile == "real":
        env.update({
            "PETPLATFORM_PROFILE": "real", "PETPLATFORM_DATABASE_URL": POSTGRES_URL,
            "PETPLATFORM_AMQP_URL": AMQP_URL, "PETPLATFORM_REDIS_URL": REDIS_URL,
            "PETPLATFORM_S3_ENDPOINT": str(s3_endpoint), "PETPLATFORM_S3_SECURE": "false",
            "PETPLATFORM_S3_ACCESS_KEY": "test", "PETPLATFORM_S3_SECRET_KEY": "test",
            "PETPLATFORM_EDGE_KEY": secrets.token_hex(32), "PETPLATFORM_PAGE_TOKEN_KEY": secrets.token_hex(32),
            "PETPLATFORM_MFA_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            # Schemas, queues and the exchange of the run's own: tests on the same broker and database never
            # meet it, and its teardown (drop_real_state) removes nothing of theirs.
            "PETPLATFORM_SCHEMA_PREFIX": (prefix := f"bench{uuid.uuid4().hex[:10]}_"),
            "PETPLATFORM_AMQP_EXCHANGE": f"{prefix}events",
        })
    return env


async def drop_real_state(env: dict[str, str]) -> None:
    """The run's PostgreSQL schemas and RabbitMQ queues (the consumers' names come from the modules)."""
    from app import wiring
    from mesh.config import load_settings
    from tests.support import platform

    settings = load_settings(**{k.removeprefix("PETPLATFORM_").lower(): v for k, v in env.items()
                                if k.startswith("PETPLATFORM_")})
    rt = wiring.runtime(settings)
    try:
        consumers = [c for spec in REGISTRY.target("all") for c in spec.load()(rt, spec).consumers()]
    finally:
        await rt.close()
    await platform.drop_real_state(settings, consumers)


@dataclass
class Row:
    profile: str
    call: str
    result: Result
    ratio_to: str = ""  # the call this row is divided by
    goal: float | None = None


BARE, FLOOR, GET, LIST = ("bare grpc.aio health Check", "health Check, our server (floor)", "GetPet direct gRPC",
                          "ListPets(20) direct gRPC")
# The edge as production deploys it, a process (pod) of its own in front of the services' process, its one core
# not shared with them: issue 8's edge ratio, measured both ways.
SPLIT_GET, SPLIT_LIST = "GetPet via own-process edge REST", "ListPets(20) via own-process edge REST"
# GetPet as a signed-in app calls it (someone else's pet: an owner reads past the cache): the token verified and
# its session checked against the revoked ones, by the edge and again by the service in the SPLIT_ row.
GET_SIGNED_IN, SPLIT_GET_SIGNED_IN = "GetPet direct gRPC, signed in", "GetPet signed in, own-process edge REST"
BARE_AGAIN = "bare grpc.aio health Check, again (drift)"  # after the others: how much the machine moved meanwhile
SHORT = {BARE: "bare", GET: "GetPet direct", GET_SIGNED_IN: "signed in direct", LIST: "ListPets direct"}
# call: (the call it is divided by, issue 8's goal for that ratio)
RATIOS = {
    FLOOR: (BARE, 0.8), GET: (BARE, 0.5), GET_SIGNED_IN: (BARE, None), LIST: (BARE, 0.2),
    "ListPets(20) dogs near, by distance": (BARE, None),
    "GetPet via edge REST": (GET, 0.7), "GetPet via edge gRPC-Web": (GET, None),
    SPLIT_GET: (GET, 0.7), SPLIT_LIST: (LIST, None), SPLIT_GET_SIGNED_IN: (GET_SIGNED_IN, None),
    "GetPet via edge gRPC pass-through": (GET, None), "ListPets(20) via edge REST": (LIST, None),
    "ListPets(20) via edge gRPC-Web": (LIST, None), "ListPets(20) via edge gRPC pass-through": (LIST, None),
    marketplace.BOOK: (BARE, None), marketplace.SLOTS: (BARE, None), marketplace.SLOTS_ALONE: (BARE, None),
    BARE_AGAIN: (BARE, None),
}


async def bench_profile(profile: str, tmp: Path, bare: health_pb2_grpc.HealthStub, http: aiohttp.ClientSession,
                        s3_endpoint: str | None = None, workers: int = 1) -> list[Row]:
    """workers > 1: `run --workers N` (real profile), its parent idle; the rows are labelled <profile>-<N>w."""
    ports = Ports()
    env = platform_env(profile, tmp / f"{profile}-{workers}", ports, s3_endpoint)
    base = f"http://127.0.0.1:{ports.http}"
    label = profile if workers == 1 else f"{profile}-{workers}w"
    # The own-process edge: `run --target=edge` with every service at the platform's port.
    edge_ports = Ports(grpc=ports.grpc)
    edge_env = {**platform_env(profile, tmp / f"{profile}-{workers}", edge_ports, s3_endpoint),
                **{k: v for k, v in env.items() if k.startswith("PETPLATFORM_") and "PORT" not in k},
                **{f"PETPLATFORM_{name.upper()}_ADDR": f"127.0.0.1:{ports.grpc}" for name in REGISTRY.names}}
    try:
        async with process(f"platform-{label}", ["-m", "app.cli", "run", "--target=all", f"--workers={workers}"],
                           env, tmp, http_ready(http, base + "/readyz")) as proc, \
                process(f"edge-{label}", ["-m", "app.cli", "run", "--target=edge"], edge_env, tmp,
                        http_ready(http, f"http://127.0.0.1:{edge_ports.http}/readyz")) as edge:
            def pids() -> list[int]:
                children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
                return [proc.pid, *map(int, children), edge.pid]

            async def settled() -> None:
                for pid in pids():
                    await settle(pid)
            return await bench_calls(label, ports, bare, http, settled, pids, proc.pid if workers == 1 else None,
                                     split_edge=f"http://127.0.0.1:{edge_ports.http}", edge_pid=edge.pid)
    finally:
        if profile == "real":
            await drop_real_state(env)


async def bench_calls(profile: str, ports: Ports, bare: health_pb2_grpc.HealthStub, http: aiohttp.ClientSession,
                      settled: Callable[[], Awaitable[None]], pids: Callable[[], list[int]],
                      pid: int | None = None, split_edge: str = "", edge_pid: int | None = None) -> list[Row]:
    base = f"http://127.0.0.1:{ports.http}"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ports.grpc}") as ch, \
            grpc.aio.insecure_channel(f"127.0.0.1:{ports.edge_grpc}") as edge_ch:
        auth, pets = auth_pb2_grpc.AuthServiceStub(ch), pet_pb2_grpc.PetServiceStub(ch)
        health = health_pb2_grpc.HealthStub(ch)
        edge_pets = pet_pb2_grpc.PetServiceStub(edge_ch)
        email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
        owner = (await auth.Register(auth_pb2.RegisterRequest(email=email, password=PASSWORD,
                                                               display_name="Bench"))).account.name
        token = (await auth.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD))).access_token
        md = (("authorization", f"Bearer {token}"),)
        viewer_email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
        await auth.Register(auth_pb2.RegisterRequest(email=viewer_email, password=PASSWORD, display_name="Viewer"))
        viewer = (await auth.Login(auth_pb2.LoginRequest(email=viewer_email, password=PASSWORD))).access_token
        viewer_md = (("authorization", f"Bearer {viewer}"),)
        names = []
        for i in range(PETS):
            pet = pet_pb2.Pet(display_name=f"Pet {i}", species=[animal_pb2.SPECIES_DOG, animal_pb2.SPECIES_CAT][i % 2],
                              breed="Mixed", location=latlng_pb2.LatLng(latitude=35 + i / 1000, longitude=139.7))
            names.append((await pets.CreatePet(pet_pb2.CreatePetRequest(pet=pet), metadata=md)).pet.name)
        i = 0

        def next_name() -> str:
            nonlocal i
            i += 1
            return names[i % len(names)]

        async def rest(path, edge=base, token="", **params):
            headers = {"Authorization": f"Bearer {token}"} if token else None
            async with http.get(edge + path, params=params, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise BenchError(f"HTTP {r.status}")

        async def web(method, msg):
            async with http.post(f"{base}/petplatform.pet.v1.PetService/{method}", data=grpc_web_frame(msg),
                                 headers={"Content-Type": "application/grpc-web+proto"}) as r:
                body = await r.read()
                if r.status != 200 or b"grpc-status: 0" not in body:
                    raise BenchError(f"HTTP {r.status}, {body[-200:]!r}")

        list20 = pet_pb2.ListPetsRequest(page_size=20)
        cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            (BARE, lambda: bare.Check(health_pb2.HealthCheckRequest())),
            (FLOOR, lambda: health.Check(health_pb2.HealthCheckRequest())),
            (GET, lambda: pets.GetPet(pet_pb2.GetPetRequest(name=next_name()))),
            (GET_SIGNED_IN, lambda: pets.GetPet(pet_pb2.GetPetRequest(name=next_name()), metadata=viewer_md)),
            (LIST, lambda: pets.ListPets(list20)),
            ("ListPets(20) dogs near, by distance", lambda: pets.ListPets(pet_pb2.ListPetsRequest(
                page_size=20, species=[animal_pb2.SPECIES_DOG], near=latlng_pb2.LatLng(latitude=35.05, longitude=139.7),
                radius_km=50, order_by="distance"))),
            ("GetPet via edge REST", lambda: rest(f"/v1/{next_name()}")),
            ("GetPet via edge gRPC-Web", lambda: web("GetPet", pet_pb2.GetPetRequest(name=next_name()))),
            ("GetPet via edge gRPC pass-through", lambda: edge_pets.GetPet(pet_pb2.GetPetRequest(name=next_name()))),
            ("ListPets(20) via edge REST", lambda: rest("/v1/pets", pageSize="20")),
            (SPLIT_GET, lambda: rest(f"/v1/{next_name()}", split_edge)),
            (SPLIT_LIST, lambda: rest("/v1/pets", split_edge, pageSize="20")),
            (SPLIT_GET_SIGNED_IN, lambda: rest(f"/v1/{next_name()}", split_edge, viewer)),
            ("ListPets(20) via edge gRPC-Web", lambda: web("ListPets", list20)),
            ("ListPets(20) via edge gRPC pass-through", lambda: edge_pets.ListPets(list20)),
        ]
        if not CASES or any(w in n for w in CASES for n in (marketplace.BOOK, marketplace.SLOTS,
                                                             marketplace.SLOTS_ALONE)):
            cases += await marketplace.cases(ch, md)  # bookings first: the month is busy when its slots are read
        cases.append((BARE_AGAIN, cases[0][1]))
        if CASES:
            cases = [(n, c) for n, c in cases if n in (BARE, BARE_AGAIN) or any(w in n for w in CASES)]
        await settled()
        rows = []
        for name, call in cases:
            await measure(call, duration=min(0.5, DURATION / 5))  # warm-up: connections, caches, first-call paths
            ratio_to, goal = RATIOS.get(name, ("", None))
            serving = [BARE_PID[0]] if "bare" in name else pids()
            split = name in (SPLIT_GET, SPLIT_LIST, SPLIT_GET_SIGNED_IN) and edge_pid is not None
            before, edge_before = sum(map(cpu_seconds, serving)), cpu_seconds(edge_pid) if split else 0.0
            # The own-process edge rows: the edge's process is the one worth recording.
            async with pyspy(None if "bare" in name else edge_pid if split else pid, f"{profile}-{name}"):
                result = await measure(call, concurrency=marketplace.IN_FLIGHT.get(name, CONCURRENCY))
            result.cpu_ms = (sum(map(cpu_seconds, serving)) - before) * 1000 / max(result.n, 1)
            if split:
                result.edge_cpu_ms = (cpu_seconds(edge_pid) - edge_before) * 1000 / max(result.n, 1)
            rows.append(Row(profile, name, result, ratio_to, goal))

        async def grpc_watch(owner: str) -> AsyncIterator[str]:
            call = pets.WatchPets(pet_pb2.WatchPetsRequest(owner=owner))
            await call.initial_metadata()

            async def descriptions():
                async for change in call:
                    yield change.pet.description
            return descriptions()

        async def sse_watch(owner: str) -> AsyncIterator[str]:
            response = await http.get(f"{base}/v1/pets:watch", params={"owner": owner},
                                      headers={"Accept": "text/event-stream"})
            if response.status != 200:
                raise BenchError(f"HTTP {response.status}")

            async def descriptions():
                async with response:
                    async for line in response.content:
                        if line.startswith(b"data: "):
                            yield json.loads(line[6:])["pet"].get("description")
            return descriptions()

        for name, open_watch in ((f"WatchPets x{WATCHERS} direct gRPC (delivery)", grpc_watch),
                                 (f"WatchPets x{WATCHERS} via edge SSE (delivery)", sse_watch)):
            if CASES and not any(w in name for w in CASES):
                continue
            rows.append(Row(profile, name, await watch_fanout(pets, md, owner, open_watch)))
        return rows


def report(rows: list[Row], load: list[str]) -> None:
    print(f"\n{DURATION:g}s per case, {CONCURRENCY} calls in flight from one load-generator process; platform "
          f"(services + edge) and bare grpc.aio server in processes of their own; {os.cpu_count()} cores, "
          f"load average {' -> '.join(load)}.\nratio: req/s ÷ req/s of the named call in the same profile "
          f"(goal: issue 8); the drift row is the baseline measured again after the others.\nWatchPets rows: "
          f"{CHANGES} updates fanned out to {WATCHERS} streams, req/s = deliveries/s, p50/p99 = update call to "
          f"delivery.\ncpu ms: CPU time (user + system) of the serving process(es) per call; [cpu ratio]: the named "
          f"call's cpu ms ÷ this one's, the ratio as a CPU-bound server would see it, less moved by other load;\n"
          f"edge: the own-process edge's share of the cpu ms (the rest is the services' process).\n")
    print(f"{'profile':<9} {'call':<42} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'cpu ms':>6}  ratio"
          "  [cpu ratio]")
    by_call = {(r.profile, r.call): r.result for r in rows}
    for r in rows:
        m = r.result
        ratio = ""
        if (ref := by_call.get((r.profile, r.ratio_to))) is not None:  # None: filtered out by BENCH_CASES
            ratio = f"{m.rps / ref.rps:.2f} × {SHORT[r.ratio_to]}" if ref.rps else "n/a"
            if r.goal is not None:
                ratio += f" (goal ≥ {r.goal})"
            if m.cpu_ms > 0:
                ratio += f"  [{ref.cpu_ms / m.cpu_ms:.2f}]"
        elif r.call == BARE:
            ratio = "1"
        if m.edge_cpu_ms == m.edge_cpu_ms:  # not nan: an own-process edge row
            ratio += f"  edge {m.edge_cpu_ms:.3f} ms"
        print(f"{r.profile:<9} {r.call:<42} {m.rps:>7.0f} {m.p50:>8.2f} {m.p99:>8.2f} {m.errors:>6} {m.cpu_ms:>6.3f}"
              f"  {ratio}")


async def real_profile(tmp: Path, bare: health_pb2_grpc.HealthStub, http: aiohttp.ClientSession) -> list[Row]:
    from moto.server import ThreadedMotoServer
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        rows = await bench_profile("real", tmp, bare, http, f"{host}:{port}")
        if WORKERS > 1:
            rows += await bench_profile("real", tmp, bare, http, f"{host}:{port}", workers=WORKERS)
        return rows
    finally:
        moto.stop()


async def main() -> int:
    rows: list[Row] = []
    load = [f"{os.getloadavg()[0]:.1f}"]
    with tempfile.TemporaryDirectory(prefix="petplatform-bench-") as tmp_name:
        tmp = Path(tmp_name)
        bare_port = free_port()
        async with aiohttp.ClientSession() as http, \
                process("bare", ["-m", "tests.bench.bare", str(bare_port)], dict(os.environ), tmp,
                        lambda: grpc_serving(f"127.0.0.1:{bare_port}")) as bare_proc, \
                grpc.aio.insecure_channel(f"127.0.0.1:{bare_port}") as bare_ch:
            bare = health_pb2_grpc.HealthStub(bare_ch)
            BARE_PID[:] = [bare_proc.pid]
            if "embedded" in PROFILES:
                rows += await bench_profile("embedded", tmp, bare, http)
            if "real" in PROFILES:
                rows += await real_profile(tmp, bare, http)
    load.append(f"{os.getloadavg()[0]:.1f}")

    report(rows, load)
    failed = [r for r in rows if r.result.errors]
    for r in failed:
        print(f"FAILED {r.profile} {r.call}: {r.result.errors} failed calls, first: {r.result.first_error}",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except BenchError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
