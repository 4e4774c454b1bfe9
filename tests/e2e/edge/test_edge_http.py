"""The edge's HTTP below the API: slow or incomplete requests time out, malformed ones are answered in
the edge's error format, the access log says who asked, and the HTTP methods behave (405, HEAD, a
PATCH body that repeats the resource's name)."""
from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pytest

from gateway.edge import LOCAL_ONLY_PATHS, PAGE_PREFIXES
from tests.support.platform import EdgeClient, embedded_settings, start_edge, start_platform
from tests.support.web import call, signup

TIMEOUT = 0.5  # the tight edge's header, body and idle limits


@pytest.fixture(scope="module")
async def tight(tmp_path_factory, smtp_sink):
    """An edge with half-second limits, reached over raw sockets."""
    platform = await start_platform(embedded_settings(
        tmp_path_factory.mktemp("tight"), smtp_sink, http_header_timeout_seconds=TIMEOUT,
        http_body_timeout_seconds=TIMEOUT, http_idle_timeout_seconds=TIMEOUT))
    edge = await start_edge(platform)
    yield edge.http_port
    await edge.stop(grace=1)
    await platform.stop(grace=1)


async def exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Sends raw bytes; the one response, read to the end of the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    return int(status_line.split()[1]), dict(line.split(": ", 1) for line in lines), body


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed the connection (polls; gives up after 10 s)."""
    return await asyncio.wait_for(reader.read(), 10)


async def test_headers_sent_a_byte_at_a_time_time_out(tight):
    reader, writer = await asyncio.open_connection("127.0.0.1", tight)
    request = b"GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Slow: " + b"a" * 1000 + b"\r\n\r\n"
    closing = asyncio.ensure_future(closed_by_server(reader))
    sent = 0
    while not closing.done() and sent < len(request):
        writer.write(request[sent:sent + 1])
        sent += 1
        await asyncio.sleep(0.05)  # a slow client, not a test timing: the loop ends when the server closes
    assert await closing == b"" and sent < len(request), "closed before the headers were complete, unanswered"
    writer.close()


async def test_a_body_shorter_than_its_length_times_out_as_408(tight):
    body = b'{"email": "x@example.com"'
    for path, content_type in (("/v1/auth/login", "application/json"),
                               ("/petplatform.auth.v1.AuthService/Login", "application/grpc-web+proto")):
        status, headers, answer = await exchange(tight, (
            f"POST {path} HTTP/1.1\r\nHost: edge\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) + 100}\r\n\r\n").encode() + body)
        if content_type == "application/json":
            err = json.loads(answer)
            assert status == 408 and err["code"] == 4 and err["details"][0]["reason"] == "BODY_TIMEOUT"
        else:
            assert status == 200 and headers["grpc-status"] == "4"  # DEADLINE_EXCEEDED, trailers-only
        assert "Server" not in headers
    status, headers, _ = await exchange(tight, b"POST /verify-email HTTP/1.1\r\nHost: edge\r\nContent-Type: "
                                               b"application/x-www-form-urlencoded\r\nContent-Length: 50\r\n\r\n")
    assert status == 408 and headers["Content-Type"].startswith("text/html"), "the page fails as a page"


async def test_idle_connections_are_closed(tight):
    reader, writer = await asyncio.open_connection("127.0.0.1", tight)  # never sends a byte
    assert await closed_by_server(reader) == b""
    reader, writer = await asyncio.open_connection("127.0.0.1", tight)  # keep-alive, then silence
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n")
    answer = await closed_by_server(reader)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"status": "ok"}')
    writer.close()


MARK = "<script>alert(1)</script>"


@pytest.mark.parametrize("request_bytes, what", [
    (f"GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Big: {MARK}{'a' * 20000}\r\n\r\n", "too long"),
    (f"GET /{MARK}{'a' * 20000} HTTP/1.1\r\nHost: edge\r\n\r\n", "too long"),
    (f"GET /healthz HTTP/1.1\r\nHost: edge\r\nContent-Length: 1{MARK}\r\n\r\n", "malformed"),
    (f"G{MARK}T /healthz HTTP/1.1\r\nHost: edge\r\n\r\n", "not an HTTP method"),
    ("GET /healthz HTTP/1.1\r\nHost: edge\r\n" + "".join(f"X-{i}: {MARK}\r\n" for i in range(200)) + "\r\n",
     "malformed HTTP request"),
    (f"GET /healthz HTTP/1.1\r\nHost: edge\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n{MARK}",
     "malformed"),
    (f"POST /v1/auth/login HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\nzz{MARK}\r\n\r\n",
     "malformed"),
    ("POST /v1/auth/login HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
     f"Content-Length: {len(MARK)}\r\n\r\n{MARK}", "malformed body"),  # found once the body is read
])
async def test_malformed_http_is_answered_in_the_edge_format(edge: EdgeClient, caplog, request_bytes, what):
    caplog.set_level("INFO")
    status, headers, body = await exchange(edge.edge.http_port, request_bytes.encode())
    err = json.loads(body)
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert err["code"] == 3 and what in err["message"] and err["details"][0]["reason"] == "MALFORMED_HTTP"
    assert "Server" not in headers and headers["X-Content-Type-Options"] == "nosniff" and "X-Request-Id" in headers
    assert MARK not in body.decode() and "aiohttp" not in body.decode(), "nothing of the request echoed"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a client's mistake is no error of ours"
    assert any("malformed" in str(r.msg) or "400" in str(r.msg) for r in caplog.records), "but logged"


async def test_access_log_names_the_client_and_the_request_id(edge: EdgeClient, caplog):
    caplog.set_level("INFO", logger="edge.access")
    rid = f"req-{uuid.uuid4().hex[:8]}"
    async with edge.http.get(edge.url + "/v1/pets", headers={"X-Request-Id": rid}) as r:
        assert r.status == 200
    (line,) = [r.msg for r in caplog.records if r.name == "edge.access" and rid in str(r.msg)]
    assert line["request_id"] == rid and line["client"] == "127.0.0.1" and line["event"] == "GET /v1/pets 200"


async def test_405_says_what_is_allowed(edge: EdgeClient):
    for method, path, allowed in (("PUT", "/v1/pets", "GET,HEAD,POST"), ("DELETE", "/v1/auth/login", "POST"),
                                  ("POST", f"/v1/pets/{'0' * 32}", "DELETE,GET,HEAD,PATCH")):
        status, err, headers = await call(edge, method, path, {})
        assert (status, headers.get("Allow")) == (405, allowed) and err["code"] == 3


async def test_head_works_on_api_get_paths(edge: EdgeClient):
    _, token = await signup(edge, "Head")
    _, pet, _ = await call(edge, "POST", "/v1/pets", {"displayName": "Heady", "species": "SPECIES_DOG"}, token)
    for path, status in ((f"/v1/{pet['name']}", 200), (f"/v1/pets/{'9' * 32}", 404), ("/v1/pets/nope", 400)):
        async with edge.http.get(edge.url + path) as got, edge.http.head(edge.url + path) as head:
            assert got.status == head.status == status
            for h in ("Content-Type", "Content-Length", "Content-Security-Policy", "RateLimit-Limit"):
                assert head.headers.get(h) == got.headers.get(h), h
            assert await head.read() == b"" and len(await got.read()) == int(got.headers["Content-Length"])
    for path in ("/healthz", "/readyz", "/openapi.json"):  # the edge's own GET paths too
        async with edge.http.head(edge.url + path) as head:
            assert head.status == 200 and await head.read() == b""
    async with edge.http.head(edge.url + "/v1/pets:watch") as head:  # a stream: it opens, and that is all
        assert head.status == 200 and head.headers["Content-Type"] == "application/x-ndjson"
        assert await head.read() == b""


async def test_a_patch_body_may_repeat_the_name_from_the_path(edge: EdgeClient):
    _, token = await signup(edge, "Patcher")
    _, created, _ = await call(edge, "POST", "/v1/pets", {"displayName": "Round", "species": "SPECIES_DOG"}, token)
    _, pet, _ = await call(edge, "GET", f"/v1/{created['name']}")
    status, updated, _ = await call(edge, "PATCH", f"/v1/{pet['name']}", {**pet, "displayName": "Trip"}, token,
                                    updateMask="displayName")
    assert status == 200 and updated["displayName"] == "Trip", "the resource as GET returned it, edited"
    for other in ("pets/" + "1" * 32, "", 5):
        status, err, _ = await call(edge, "PATCH", f"/v1/{pet['name']}", {**pet, "name": other}, token,
                                    updateMask="displayName")
        assert status == 400 and err["details"][1]["fieldViolations"][0]["field"] == "pet.name", other
    status, err, _ = await call(edge, "PATCH", f"/v1/{pet['name']}", {"displayName": "X", "name": pet["name"]},
                                token, updateMask="displayName")
    assert status == 200


async def test_behind_envoy_every_page_of_this_edge_is_routed_to_it(edge: EdgeClient):
    # Envoy serves the contracts itself; whatever else this edge serves must be routed here by envoy.yaml
    # (tools/envoy_config.py reads PAGE_PREFIXES), or it is unreachable in production.
    paths = {r.resource.canonical for r in edge.edge.runner.app.router.routes() if r.resource is not None}
    served = {p for p in paths if p != "/{tail}" and not p.startswith(LOCAL_ONLY_PATHS)}
    assert served and not {p for p in served if not p.startswith(PAGE_PREFIXES)}, "add it to PAGE_PREFIXES"
