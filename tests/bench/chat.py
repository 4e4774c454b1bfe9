"""`make bench` (chat): BENCH_CHAT_STREAMS open StreamEvents streams (1,000) on one platform process, in
pairs (one room per pair), while SendMessage is called at BENCH_CHAT_RATE messages a second (500) for
BENCH_SECONDS; prints messages/s delivered and p50/p99 send-to-receive latency (issue 10: p99 < 50 ms), on
the embedded and the real profile.

The platform runs as `make up` runs it (`app.cli run --target=all`), in a process of its own. The rooms are
written into chat's database before it starts, with chat's own store, as match.created would have made
them (the embedded bus cannot be reached from another process); the access tokens are signed with the
key the platform is given, as the auth service would sign them (a thousand bcrypt sign-ups would take
minutes). Latency runs from just before SendMessage is called to the recipient's stream reading the
message, both in this process.

BENCH_CHAT_LAYOUT: `all` (the default: the one process above), `split` (the real profile again as production
deploys chat: `run --target=chat` alone, and every other service, the consumers of message.sent among them,
in a second process, `run --target=<the rest>`; the cpu column is then both processes' CPU, and the chat
process's own in brackets), or `all,split` (both rows: the default)."""
from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
import aiohttp
import grpc

from app.registry import REGISTRY
from petplatform.chat.v1 import chat_pb2, chat_pb2_grpc
from tests.bench.run import (DURATION, PROFILES, BenchError, Ports, cpu_seconds, drop_real_state, grpc_serving,
                             http_ready, platform_env, process, pyspy, settle)
from tests.support.tokens import sign_token

STREAMS = int(os.environ.get("BENCH_CHAT_STREAMS", "1000"))
RATE = float(os.environ.get("BENCH_CHAT_RATE", "500"))
LAYOUTS = os.environ.get("BENCH_CHAT_LAYOUT", "all,split").split(",")
STREAMS_PER_CHANNEL = 100
GOAL_P99_MS = 50.0


async def seed_rooms(env: dict[str, str], pairs: list[tuple[str, str]]) -> None:
    """Chat's schema and one open room per pair, written with chat's store before the platform starts."""
    from app import wiring
    from mesh.config import load_settings
    from mesh.sql import utcnow
    from services.chat.store import SqlChatStore

    settings = load_settings(**{k.removeprefix("PETPLATFORM_").lower(): v for k, v in env.items()
                                if k.startswith("PETPLATFORM_")})
    platform = wiring.platform(settings, "chat", port=0)
    await platform.migrate()
    rt = wiring.runtime(settings)
    db = rt.database("chat")
    store = SqlChatStore(db)
    try:
        async with db.transaction() as s:
            for a, b in pairs:
                await store.open_room(s, room_id=uuid.uuid4().hex, match_id=uuid.uuid4().hex, members=[a, b],
                                      now=utcnow())
    finally:
        await db.dispose()
        await rt.close()


async def bench_profile(profile: str, tmp: Path, http: aiohttp.ClientSession, s3_endpoint: str | None = None,
                        layout: str = "all") -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    from services.auth.keys import public_jwk
    kid = public_jwk(key.public_key())["kid"]
    ports = Ports()
    env = platform_env(profile, tmp / f"{profile}-{layout}", ports, s3_endpoint)
    env["PETPLATFORM_JWT_PRIVATE_KEY"] = pem
    env["PETPLATFORM_MAX_CONCURRENT_RPCS"] = str(10 * STREAMS)  # the streams alone would fill the default
    users = [uuid.uuid4().hex for _ in range(STREAMS)]
    pairs = list(zip(users[::2], users[1::2], strict=True))
    label = profile if layout == "all" else f"{profile}-{layout}"
    try:
        await seed_rooms(env, pairs)
        if layout == "all":
            async with process(f"chat-{label}", ["-m", "app.cli", "run", "--target=all"], env, tmp,
                               http_ready(http, f"http://127.0.0.1:{ports.http}/readyz")) as proc:
                await settle(proc.pid)
                return await run_load(label, ports, users, key, kid, [proc.pid])
        # Chat on a port of its own, every other service at the rest's port (and the rest finds chat at its).
        chat_ports = Ports()
        rest = ",".join(name for name in REGISTRY.names if name != "chat")
        rest_env = {**env, "PETPLATFORM_CHAT_ADDR": f"127.0.0.1:{chat_ports.grpc}"}
        chat_env = {**platform_env(profile, tmp / f"{profile}-{layout}-chat", chat_ports, s3_endpoint),
                    **{k: v for k, v in env.items() if k.startswith("PETPLATFORM_") and "PORT" not in k
                       and k != "PETPLATFORM_DATA_DIR"},
                    **{f"PETPLATFORM_{name.upper()}_ADDR": f"127.0.0.1:{ports.grpc}" for name in REGISTRY.names
                       if name != "chat"}}
        async with process(f"rest-{label}", ["-m", "app.cli", "run", f"--target={rest}"], rest_env, tmp,
                           lambda: grpc_serving(f"127.0.0.1:{ports.grpc}")) as rest_proc, \
                process(f"chat-{label}", ["-m", "app.cli", "run", "--target=chat", f"--port={chat_ports.grpc}"],
                        chat_env, tmp, lambda: grpc_serving(f"127.0.0.1:{chat_ports.grpc}")) as chat_proc:
            await settle(rest_proc.pid)
            await settle(chat_proc.pid)
            return await run_load(label, chat_ports, users, key, kid, [chat_proc.pid, rest_proc.pid])
    finally:
        if profile == "real":
            await drop_real_state(env)


async def run_load(profile: str, ports: Ports, users: list[str], key, kid: str, pids: list[int]) -> str:
    """pids: the platform's processes, chat's first (py-spy records it; the CPU is theirs together)."""
    md = {u: (("authorization", "Bearer " + sign_token({"sub": u, "sid": uuid.uuid4().hex, "role": "user",
                                                        "exp": int(time.time()) + 3600}, key, kid)),)
          for u in users}
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{ports.grpc}")
                for _ in range((len(users) + STREAMS_PER_CHANNEL - 1) // STREAMS_PER_CHANNEL)]
    stubs = [chat_pb2_grpc.ChatServiceStub(ch) for ch in channels]
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    errors: list[str] = []
    stored: set[str] = set()  # messages whose SendMessage succeeded
    delivered: set[str] = set()
    try:
        rooms = {}
        for u in users[::2]:
            listed = await stubs[0].ListRooms(chat_pb2.ListRoomsRequest(), metadata=md[u])
            rooms[u] = listed.rooms[0]
        calls = []
        for i, u in enumerate(users):
            calls.append(stubs[i // STREAMS_PER_CHANNEL].StreamEvents(chat_pb2.StreamEventsRequest(),
                                                                       metadata=md[u]))

        async def read(call, user: str) -> None:
            while (response := await call.read()) is not grpc.aio.EOF:  # read() already began: not `async for`
                event = response.event
                if event.WhichOneof("kind") == "message" and event.message.sender != f"users/{user}":
                    t = sent_at.get(event.message.name)
                    if t is not None and event.message.name not in delivered:
                        delivered.add(event.message.name)
                        latencies.append(time.perf_counter() - t)
        # Every stream is open (CaughtUp read) before the first send.
        for call in calls:
            first = await asyncio.wait_for(call.read(), 60)
            if not first.event.HasField("caught_up"):
                raise BenchError(f"a stream began with {first}")
        readers = [asyncio.create_task(read(call, u)) for call, u in zip(calls, users, strict=True)]

        async def send_one(sender: str, room: chat_pb2.Room, stub) -> None:
            message_id = uuid.uuid4().hex
            name = f"{room.name}/messages/{message_id}"
            sent_at[name] = time.perf_counter()
            try:
                await stub.SendMessage(chat_pb2.SendMessageRequest(
                    parent=room.name, message_id=message_id, message=chat_pb2.Message(text="hello")),
                    metadata=md[sender], timeout=10)
                stored.add(name)
            except grpc.aio.AioRpcError as e:
                errors.append(f"{e.code().name}: {e.details()}")

        total = int(RATE * DURATION)
        senders = list(rooms.items())
        async with pyspy(pids[0], f"chat-{profile}-{len(users)}-streams"):
            cpu_before = [cpu_seconds(pid) for pid in pids]
            start = time.perf_counter()
            sends = []
            for n in range(total):
                due = start + n / RATE
                if (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                sender, room = senders[n % len(senders)]
                sends.append(asyncio.create_task(send_one(sender, room, stubs[n % len(stubs)])))
            await asyncio.gather(*sends)
            sending = time.perf_counter() - start
            for _ in range(500):  # until every message sent has arrived (or 10 s more)
                if stored <= delivered:
                    break
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - start
            # The platform's CPU (all of its threads, user + system) per message: unlike latency, it does not
            # depend much on what else the machine runs. The streams' idle cost is in it too. Taken once the
            # platform is idle again, so the consumers' work on the messages (notification, fraud, admin's
            # subjects), however far behind delivery it runs, is in it as well.
            # Per message written: a send whose caller timed out is still stored and delivered (it is shielded).
            for pid in pids:
                await settle(pid, timeout=120)
            written = max(len(stored | delivered), 1)
            cpu_ms = [(cpu_seconds(pid) - before) * 1000 / written
                      for pid, before in zip(pids, cpu_before, strict=True)]
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    finally:
        for ch in channels:
            await ch.close()
    lost = len(stored - delivered)  # sent and stored, never seen by the other member
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    verdict = "<" if q[98] * 1000 < GOAL_P99_MS else "≥"
    line = (f"{profile:<11} {len(users):>7} {RATE:>9.0f} {total / sending:>10.0f} {len(latencies) / elapsed:>11.0f} "
            f"{q[49] * 1000:>8.2f} {q[98] * 1000:>8.2f} {sum(cpu_ms):>10.2f} {len(errors):>6} {lost:>5}  "
            f"p99 {verdict} {GOAL_P99_MS:g} ms goal" + (f"  [chat process {cpu_ms[0]:.2f}]" if len(pids) > 1 else ""))
    if errors or lost:
        line += f"\nFAILED {profile}: {len(errors)} failed sends (first: {errors[:1]}), {lost} never delivered"
    return line


async def main() -> int:
    lines = []
    with tempfile.TemporaryDirectory(prefix="petplatform-chat-bench-") as tmp_name:
        tmp = Path(tmp_name)
        async with aiohttp.ClientSession() as http:
            if "embedded" in PROFILES and "all" in LAYOUTS:  # split needs a bus between processes: real only
                lines.append(await bench_profile("embedded", tmp, http))
            if "real" in PROFILES:
                from moto.server import ThreadedMotoServer
                moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
                moto.start()
                try:
                    host, port = moto.get_host_and_port()
                    for layout in LAYOUTS:
                        lines.append(await bench_profile("real", tmp, http, f"{host}:{port}", layout))
                finally:
                    moto.stop()
    print(f"\nChat: {STREAMS} StreamEvents streams in {STREAMS // 2} rooms on one platform process (real-split: on "
          "a chat process, the other services in a second), SendMessage "
          f"paced at the target rate for {DURATION:g}s from one load-generator process ({os.cpu_count()} cores).\n"
          "latency: SendMessage called -> the other member's stream reads it; cpu: the platform process's CPU "
          "per message sent.\n")
    print(f"{'profile':<11} {'streams':>7} {'target/s':>9} {'sent/s':>10} {'delivered/s':>11} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'cpu ms/msg':>10} {'errors':>6} {'lost':>5}")
    for line in lines:
        print(line)
    return 1 if any("FAILED" in line for line in lines) else 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except BenchError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
