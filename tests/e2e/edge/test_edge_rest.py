"""The edge over real HTTP: REST/JSON transcoding, errors as google.rpc.Status, and edge policy."""
from __future__ import annotations

import base64
import io
import uuid

import aiohttp
import grpc
from openapi_spec_validator import validate
from PIL import Image
import pytest

from gateway.transcode import HTTP_STATUS
from tests.support.platform import PASSWORD, EdgeClient, embedded_settings, lone_edge, start_edge, start_platform
from tests.support.web import call, signup


@pytest.fixture(scope="module")
async def people(edge: EdgeClient):
    return await signup(edge, "Owner"), await signup(edge, "Other")


async def test_newcomer_flow_with_documented_paths(edge: EdgeClient, people):
    (owner, token), (_, other) = people
    status, pet, _ = await call(edge, "POST", "/v1/pets", {
        "displayName": "Mochi", "species": "SPECIES_DOG", "breed": "Shiba Inu", "sex": "SEX_FEMALE",
        "birthDate": {"year": 2022, "month": 5, "day": 1}, "location": {"latitude": 35.68, "longitude": 139.76},
        "goodWithChildren": True}, token)
    assert status == 200 and pet["owner"] == owner and pet["species"] == "SPECIES_DOG"  # response_body: the pet
    pet_id = pet["name"].split("/")[1]
    status, got, _ = await call(edge, "GET", f"/v1/pets/{pet_id}")
    assert status == 200 and got["name"] == pet["name"]
    status, listed, _ = await call(edge, "GET", "/v1/pets", species="SPECIES_DOG", **{
        "near.latitude": "35.68", "near.longitude": "139.76", "radiusKm": "5", "goodWithChildren": "true",
        "owner": owner})
    assert status == 200 and [p["name"] for p in listed["pets"]] == [pet["name"]]
    status, updated, _ = await call(edge, "PATCH", f"/v1/pets/{pet_id}", {"status": "STATUS_PENDING"}, token,
                                    updateMask="status")
    assert status == 200 and updated["status"] == "STATUS_PENDING"
    status, err, _ = await call(edge, "PATCH", f"/v1/pets/{pet_id}", {"displayName": "Stolen"}, other,
                                updateMask="displayName")
    assert status == 403 and err["code"] == 7 and err["details"][0]["reason"] == "NOT_OWNER"
    status, _, _ = await call(edge, "DELETE", f"/v1/pets/{pet_id}", token=token)
    assert status == 200
    status, err, _ = await call(edge, "GET", f"/v1/pets/{pet_id}")
    assert status == 404 and err["code"] == 5


async def test_additional_binding_lists_one_owners_pets(edge: EdgeClient, people):
    (owner, token), (other, other_token) = people
    _, mine, _ = await call(edge, "POST", "/v1/pets", {"displayName": "Mine", "species": "SPECIES_DOG"}, token)
    await call(edge, "POST", "/v1/pets", {"displayName": "Theirs", "species": "SPECIES_DOG"}, other_token)
    status, listed, _ = await call(edge, "GET", f"/v1/{owner}/pets", pageSize="100")
    assert status == 200 and mine["name"] in {p["name"] for p in listed["pets"]}
    assert {p["owner"] for p in listed["pets"]} == {owner}
    status, err, _ = await call(edge, "GET", f"/v1/{owner}/pets", owner=other)  # bound by the path
    assert status == 400 and err["details"][0]["reason"] == "UNKNOWN_FIELD"


async def test_repeated_query_parameters_and_photos_over_rest(edge: EdgeClient, people):
    (owner, token), _ = people
    for name, species in (("Rex", "SPECIES_DOG"), ("Tama", "SPECIES_CAT"), ("Pyon", "SPECIES_RABBIT")):
        await call(edge, "POST", "/v1/pets", {"displayName": name, "species": species}, token)
    async with edge.http.get(f"{edge.url}/v1/pets?owner={owner}&species=SPECIES_DOG&species=SPECIES_CAT") as r:
        names = {p["displayName"] for p in (await r.json())["pets"]}
    assert {"Rex", "Tama"} <= names and "Pyon" not in names
    _, pet, _ = await call(edge, "POST", "/v1/pets", {"displayName": "Pic", "species": "SPECIES_CAT"}, token)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, "PNG")
    status, photo, _ = await call(edge, "POST", f"/v1/{pet['name']}/photos",
                                  {"content": base64.b64encode(buf.getvalue()).decode()}, token)
    assert status == 200 and photo["contentType"] == "image/png"
    async with edge.http.get(edge.url + photo["uri"]) as r:  # the embedded blob store, served by the edge
        assert r.status == 200 and r.content_type == "image/png" and await r.read() == buf.getvalue()


@pytest.mark.parametrize("method, path, body, params, status, field", [
    ("GET", "/v1/nothing-here", None, {}, 404, None),
    ("PUT", "/v1/pets", {}, {}, 405, None),
    ("POST", "/v1/auth/login", None, {}, 400, "body"),  # raw "{not json"
    ("POST", "/v1/pets", {"displayName": 5, "species": "SPECIES_DOG"}, {}, 400, "displayName"),
    ("POST", "/v1/pets", {"displayName": "X", "species": "SPECIES_DRAGON"}, {}, 400, "species"),
    ("POST", "/v1/pets", {"displayName": "X", "species": "SPECIES_DOG", "color": "red"}, {}, 400, None),
    ("GET", "/v1/pets", None, {"colour": "red"}, 400, "colour"),
    ("GET", "/v1/pets", None, {"pageSize": "ten"}, 400, "pageSize"),
    ("GET", "/v1/pets", None, {"goodWithChildren": "maybe"}, 400, "goodWithChildren"),
    ("GET", "/v1/pets", None, {"species": "SPECIES_DRAGON"}, 400, "species"),
    ("GET", "/v1/pets", None, {"near": "here"}, 400, "near"),
])
async def test_edge_errors_are_status_json(edge: EdgeClient, people, method, path, body, params, status, field):
    (_, token), _ = people
    raw = b"{not json" if (method, path, body) == ("POST", "/v1/auth/login", None) else None
    got, err, headers = await call(edge, method, path, body, token, raw=raw, **params)
    assert got == status
    assert headers["Content-Type"].startswith("application/json")
    assert set(err) >= {"code", "message"} and err["code"] != 13
    if field:
        violations = [v for d in err.get("details", []) for v in d.get("fieldViolations", [])]
        assert any(field in v["field"] or field in v["description"] for v in violations), err


async def test_body_too_large_is_413_status(edge: EdgeClient):
    status, err, _ = await call(edge, "POST", "/v1/auth/login", raw=b"{" + b" " * (9 * 1024 * 1024) + b"}")
    assert status == 413 and err["details"][0]["reason"] == "BODY_TOO_LARGE"


async def test_grpc_codes_map_to_http(edge: EdgeClient, people):
    (_, token), _ = people
    new_pet = {"displayName": "x", "species": "SPECIES_DOG"}
    assert (await call(edge, "POST", "/v1/pets", new_pet))[0] == 401
    assert (await call(edge, "POST", "/v1/pets", new_pet, "forged.token.x"))[0] == 401
    # A taken email is answered as a new one (Register does not tell which emails have accounts).
    email = f"d{uuid.uuid4().hex[:8]}@example.com"
    _, first, _ = await call(edge, "POST", "/v1/auth/register", {"email": email, "password": PASSWORD,
                                                                 "displayName": "D"})
    status, again, _ = await call(edge, "POST", "/v1/auth/register", {"email": email, "password": PASSWORD,
                                                                       "displayName": "D"})
    assert status == 200 and set(again["account"]) == set(first["account"])
    assert again["account"]["name"] != first["account"]["name"]
    status, err, _ = await call(edge, "GET", f"/v1/pets/{'0' * 32}")
    assert status == 404 and err["details"][1]["resourceName"] == f"pets/{'0' * 32}"
    # the whole grpc-gateway table
    assert {c.name: v for c, v in HTTP_STATUS.items()} == {
        "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
        "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401,
        "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400,
        "UNIMPLEMENTED": 501, "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500}


async def test_security_headers_and_request_ids(edge: EdgeClient, caplog):
    caplog.set_level("INFO")
    async with edge.http.get(edge.url + f"/v1/pets/{'1' * 32}", headers={"X-Request-Id": "req-abc-123"}) as r:
        assert r.headers["X-Request-Id"] == "req-abc-123"
        for h in ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy"):
            assert h in r.headers
        assert "Server" not in r.headers, "no banner"
    for forged in ("x" * 500, "a\tb", "ünï"):  # ids end up in logs: odd ones are replaced
        async with edge.http.get(edge.url + "/healthz", headers={"X-Request-Id": forged}) as r:
            assert r.headers["X-Request-Id"] != forged and len(r.headers["X-Request-Id"]) == 32
    # the id reached the service, whose interceptor logged the NOT_FOUND with it
    assert any("req-abc-123" in str(rec.msg) and "rpc rejected" in str(rec.msg) for rec in caplog.records)


async def test_access_log_has_no_secrets(edge: EdgeClient, people, caplog):
    (_, token), _ = people
    caplog.set_level("INFO", logger="edge.access")
    secret_email = "who.am.i@example.com"
    await call(edge, "POST", "/v1/auth/login", {"email": secret_email, "password": "hunter2hunter2"})
    await call(edge, "GET", "/v1/users/me", token=token)
    logged = " ".join(str(r.msg) + str(r.args) for r in caplog.records if r.name == "edge.access")
    assert logged and token not in logged and "hunter2" not in logged and secret_email not in logged


async def test_cors_preflight(edge: EdgeClient):
    req = {"Origin": "http://localhost:3100", "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "content-type,x-grpc-web"}
    async with edge.http.options(edge.url + "/petplatform.pet.v1.PetService/ListPets", headers=req) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3100"
        assert "x-grpc-web" in r.headers["Access-Control-Allow-Headers"]
        assert "grpc-status" in r.headers["Access-Control-Expose-Headers"]
    async with edge.http.options(edge.url + "/v1/pets", headers={**req, "Origin": "https://evil.example"}) as r:
        assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers


async def test_public_photos_may_be_embedded_by_other_origins(edge: EdgeClient, people):
    """The web app (another origin) shows them in <img>; the API's own answers stay same-site."""
    _, token = people[0]
    _, pet, _ = await call(edge, "POST", "/v1/pets", {"displayName": "Pic", "species": "SPECIES_CAT"}, token)
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "orange").save(png, "PNG")
    status, photo, _ = await call(edge, "POST", f"/v1/{pet['name']}/photos",
                                  {"content": base64.b64encode(png.getvalue()).decode()}, token)
    assert status == 200
    async with edge.http.get(edge.url + photo["uri"], headers={"Origin": "http://localhost:3100"}) as r:
        assert r.status == 200 and r.content_type == "image/png"
        assert r.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    async with edge.http.get(edge.url + f"/v1/{pet['name']}") as r:
        assert r.status == 200 and r.headers["Cross-Origin-Resource-Policy"] == "same-site"


async def test_edge_endpoints(edge: EdgeClient):
    async with edge.http.get(edge.url + "/openapi.json") as r:
        spec = await r.json()
    validate(spec)
    assert {"/v1/pets", "/v1/pets/{pet}", "/v1/auth/login", "/v1/users/{user}/reviews"} <= set(spec["paths"])
    ops = [op["operationId"] for methods in spec["paths"].values() for op in methods.values()]
    assert len(ops) == len(set(ops)) and "PetService_GetPet" in ops
    assert spec["paths"]["/v1/users/{user}/pets"]["get"]["operationId"] == "PetService_ListPets2"
    assert set(spec["paths"]["/v1/pets:watch"]["get"]["responses"]["200"]["content"]) == {
        "application/x-ndjson", "text/event-stream"}
    async with edge.http.get(edge.url + "/docs") as r:
        assert r.status == 200 and "script-src" not in r.headers["Content-Security-Policy"]
        assert "/v1/pets/{pet}" in await r.text()
    async with edge.http.get(edge.url + "/.well-known/jwks.json") as r:
        assert (await r.json())["keys"][0]["alg"] == "ES256"
    for path in ("/healthz", "/readyz"):
        async with edge.http.get(edge.url + path) as r:
            assert r.status == 200


async def test_rate_limit_exhaustion_and_reset(tmp_path, smtp_sink):
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink, rate_limit_window_seconds=3))
    edge = await start_edge(platform)
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{edge.http_port}/v1/pets"
            statuses = []
            for _ in range(101):
                async with http.get(url) as r:
                    statuses.append(r.status)
                    last = (r.headers, await r.json())
            assert statuses[:100] == [200] * 100 and statuses[100] == 429
            headers, err = last
            assert int(headers["Retry-After"]) >= 1 and headers["RateLimit-Remaining"] == "0"
            assert headers["RateLimit-Limit"] == "100"
            assert err["code"] == 8 and any("retryDelay" in d for d in err["details"])
            import asyncio
            await asyncio.sleep(int(headers["Retry-After"]) + 0.1)
            async with http.get(url) as r:
                assert r.status == 200, "the budget is back after the window"
    finally:
        await edge.stop(grace=1)
        await platform.stop(grace=1)


async def test_ip_deny_list(tmp_path, smtp_sink):
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink, ip_deny=["127.0.0.0/8"]))
    edge = await start_edge(platform)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{edge.http_port}/v1/pets") as r:
                assert r.status == 403 and (await r.json())["details"][0]["reason"] == "IP_DENIED"
    finally:
        await edge.stop(grace=1)
        await platform.stop(grace=1)


async def test_client_deadline_is_504_and_unreachable_service_503(edge: EdgeClient, tmp_path, smtp_sink):
    status, err, _ = await call(edge, "GET", "/v1/pets", headers={"grpc-timeout": "1n"})
    assert status == 504 and err["code"] == 4
    for malformed in ("1" * 5000 + "S", "²S", "5 S", "5s"):  # not the spec's form: the default deadline applies
        assert (await call(edge, "GET", "/v1/pets", headers={"grpc-timeout": malformed}))[0] == 200
    lonely = lone_edge(embedded_settings(tmp_path, smtp_sink), "127.0.0.1:1")
    rt = lonely.rt
    await lonely.start(http_port=0, grpc_port=0)
    try:
        base = f"http://127.0.0.1:{lonely.http_port}"
        async with edge.http.get(base + "/v1/pets") as r:
            assert r.status == 503 and (await r.json())["code"] == 14
        async with edge.http.get(base + "/readyz") as r:
            assert r.status == 503 and (await r.json())["ready"] is False
        async with edge.http.get(base + "/healthz") as r:
            assert r.status == 200  # alive, just not ready
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
        async with grpc.aio.insecure_channel(f"127.0.0.1:{lonely.grpc_port}") as ch:
            async def ask():
                yield reflection_pb2.ServerReflectionRequest(list_services="")
            (reply,) = [r async for r in reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(ask())]
            assert {"petplatform.auth.v1.AuthService", "petplatform.user.v1.UserService",
                    "petplatform.pet.v1.PetService"} <= {s.name for s in reply.list_services_response.service}, \
                "the edge describes every contract, whichever services are up"
            health = health_pb2_grpc.HealthStub(ch)
            for service in ("", "petplatform.pet.v1.PetService"):  # asked of the services behind the edge
                status = (await health.Check(health_pb2.HealthCheckRequest(service=service))).status
                assert status == health_pb2.HealthCheckResponse.NOT_SERVING, service
    finally:
        await lonely.stop(grace=1)
        await rt.close()


async def test_the_link_in_the_verification_email_works(edge: EdgeClient):
    email = f"v{uuid.uuid4().hex[:8]}@example.com"
    await call(edge, "POST", "/v1/auth/register", {"email": email, "password": PASSWORD, "displayName": "V"})
    message = await edge.api.smtp.wait_for(email)
    link = next(w for w in message.get_content().split() if "/verify-email?token=" in w)
    path = link.split("127.0.0.1:3000", 1)[1]  # the edge under test listens elsewhere
    async with edge.http.get(edge.url + path) as r:  # what a mail scanner does: nothing is spent
        page = await r.text()
        assert r.status == 200 and "form-action 'self'" in r.headers["Content-Security-Policy"]
        assert "<form method='post' action='/verify-email'>" in page
    token = path.split("token=", 1)[1]
    for attempt, expected in ((1, 200), (2, 400)):  # single use
        async with edge.http.post(edge.url + "/verify-email", data={"token": token}) as r:
            assert r.status == expected, attempt
            assert ("confirmed" in await r.text()) == (expected == 200)
    async with edge.http.post(edge.url + "/verify-email", data={"token": "<script>x</script>"}) as r:
        assert r.status == 400 and "<script>" not in await r.text()
    async with edge.http.get(edge.url + "/verify-email") as r:
        assert r.status == 400


async def test_the_verification_page_fails_as_a_page(tmp_path, smtp_sink):
    lonely = lone_edge(embedded_settings(tmp_path, smtp_sink, rate_limit_per_minute=3), "127.0.0.1:1")
    rt = lonely.rt
    await lonely.start(http_port=0, grpc_port=0)
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{lonely.http_port}/verify-email"
            async with http.post(base, data={"token": "t" * 40}) as r:  # the auth service is down
                assert r.status == 503 and r.content_type == "text/html" and "again" in await r.text()
            async with http.post(base, data={"token": "x" * 5000}) as r:
                assert r.status == 413 and r.content_type == "text/html"

            async def chunked():
                yield b"token=" + b"x" * 3000
                yield b"x" * 3000
            async with http.post(base, data=chunked(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
                assert r.status == 413 and r.content_type == "text/html", "no length given: still capped"
            async with http.get(base, params={"token": "t"}) as r:  # the budget of 3 is spent
                assert r.status == 429 and r.content_type == "text/html" and int(r.headers["Retry-After"]) >= 1
    finally:
        await lonely.stop(grace=1)
        await rt.close()


async def test_forwarded_for_counts_the_address_our_proxy_saw(tmp_path, smtp_sink):
    """Behind a load balancer the client IP is the rightmost X-Forwarded-For entry, which the balancer
    wrote: entries to its left are the client's own, and cannot buy a fresh budget."""
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink, trust_forwarded_for=True,
                                                      rate_limit_per_minute=2, ip_deny=["203.0.113.0/24"]))
    edge = await start_edge(platform)
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{edge.http_port}/v1/pets"
            statuses = []
            for fake in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
                async with http.get(url, headers={"X-Forwarded-For": f"{fake}, 198.51.100.7"}) as r:
                    statuses.append(r.status)
            assert statuses == [200, 200, 429], "one client, whatever it claims"
            async with http.get(url, headers={"X-Forwarded-For": "198.51.100.8"}) as r:
                assert r.status == 200, "another client"
            async with http.get(url, headers={"X-Forwarded-For": "203.0.113.9"}) as r:
                assert r.status == 403, "deny lists apply to the forwarded address"
    finally:
        await edge.stop(grace=1)
        await platform.stop(grace=1)


async def test_refused_tokens_count_against_the_address(tmp_path, smtp_sink):
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink, rate_limit_per_minute=3))
    edge = await start_edge(platform)
    try:
        async with aiohttp.ClientSession() as http:
            statuses = []
            for _ in range(4):
                async with http.post(f"http://127.0.0.1:{edge.http_port}/v1/pets", json={},
                                     headers={"Authorization": "Bearer forged.token.x"}) as r:
                    statuses.append(r.status)
            assert statuses == [401, 401, 401, 429]
    finally:
        await edge.stop(grace=1)
        await platform.stop(grace=1)
