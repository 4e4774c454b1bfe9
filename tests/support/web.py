"""The edge over HTTP: REST/JSON calls, gRPC-Web frames, and sonora as an off-the-shelf gRPC-Web client; and
the browser scenarios' runner (Debian's Chromium driven by Playwright from a node script)."""
from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
import shutil
import socket
import struct
import uuid

import sonora.aio

from tests.support import REPO_ROOT
from tests.support.platform import PASSWORD, EdgeClient

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def browser_tools() -> str:
    """node's path, once node, Chromium and playwright-core are known to be there. A missing tool is a
    failure, not a skip: CI must not pass without having opened a browser."""
    node = shutil.which("node")
    assert node, "node is not installed (Node.js 20.19 or later)"
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium"
    assert (REPO_ROOT / "clients" / "node_modules" / "playwright-core").is_dir(), "run `make install` (npm ci)"
    return node


async def run_browser_script(script: Path, env: dict[str, str], *, timeout: float, screenshots: Path) -> None:
    """Runs a browser scenario (a node script) to its end, failing with its output if it fails. The platform
    under test serves from the caller's event loop, so the browser runs in a subprocess awaited here."""
    proc = await asyncio.create_subprocess_exec(browser_tools(), str(script), env={**os.environ, **env},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = b""
    try:
        async with asyncio.timeout(timeout):
            output, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, f"the browser test failed (screenshots in {screenshots}):\n{output.decode()}"


def free_port() -> int:
    """A TCP port nothing listens on now, for a server a test starts on a port it must know in advance."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def call(e: EdgeClient, method: str, path: str, body=None, token: str | None = None, raw: bytes | None = None,
               headers: dict | None = None, **params):
    """A REST call through the edge: (status, the JSON answer or None, headers)."""
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    kwargs = {"data": raw, "headers": {**h, "Content-Type": "application/json"}} if raw is not None else \
        {"json": body, "headers": h}
    async with e.http.request(method, e.url + path, params=params or None, **kwargs) as r:
        data = await r.json(content_type=None) if r.content_length != 0 else None
        return r.status, data, r.headers


async def signup(e: EdgeClient, name: str = "Rest User") -> tuple[str, str]:
    """Registers and logs in over REST: (the account's name, an access token)."""
    email = f"r{uuid.uuid4().hex[:10]}@example.com"
    status, account, _ = await call(e, "POST", "/v1/auth/register",
                                    {"email": email, "password": PASSWORD, "display_name": name})  # snake_case in
    assert status == 200, account
    status, tokens, _ = await call(e, "POST", "/v1/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200 and tokens["tokenType"] == "Bearer"  # lowerCamelCase out
    return account["account"]["name"], tokens["accessToken"]


class WebChannel:
    """sonora 0.2.3 predates the `_registered_method` argument that grpcio's generated stubs now pass."""

    def __init__(self, url: str):
        self._channel = sonora.aio.insecure_web_channel(url)

    def unary_unary(self, path, request_serializer=None, response_deserializer=None, _registered_method=None):
        return self._channel.unary_unary(path, request_serializer, response_deserializer)

    def unary_stream(self, path, request_serializer=None, response_deserializer=None, _registered_method=None):
        return self._channel.unary_stream(path, request_serializer, response_deserializer)

    def stream_stream(self, path, request_serializer=None, response_deserializer=None, _registered_method=None):
        """gRPC-Web has no client streaming: a stub may be made, but calling such a method fails."""
        def unsupported(*args, **kwargs):
            raise NotImplementedError(f"{path}: gRPC-Web cannot stream requests")
        return unsupported

    stream_unary = stream_stream

    async def __aenter__(self):
        await self._channel.__aenter__()
        return self

    async def __aexit__(self, *exc):
        await self._channel.__aexit__(*exc)


def decode_text(raw: bytes) -> bytes:
    """A grpc-web-text body: each chunk is base64 of its own, so padding may stand mid-body."""
    return b"".join(base64.b64decode(chunk + b"=" * (-len(chunk) % 4)) for chunk in raw.split(b"=") if chunk)


def frames(body: bytes) -> list[tuple[int, bytes]]:
    """The (flag, payload) frames of a gRPC-Web body: flag 0 a message, 0x80 the trailers."""
    out = []
    while body:
        flag, n = struct.unpack(">BI", body[:5])
        out.append((flag, body[5:5 + n]))
        body = body[5 + n:]
    return out
