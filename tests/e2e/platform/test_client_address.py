"""One rule for the client's address: the edge determines it and vouches for it with its key; a
service believes no address a caller claims for itself. Seen through the sign-in throttle, which
counts failures per account and address: forged addresses must all count as the caller's own."""
from __future__ import annotations

import math

import aiohttp
import grpc
import pytest

from mesh import client_address
from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc
from tests.support.platform import PASSWORD, Api, embedded_settings, start_edge, start_platform

FREE = 5  # failures per account and address before the back-off, which here lasts a minute


@pytest.fixture(scope="module")
async def platform(tmp_path_factory, smtp_sink):
    settings = embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink, login_backoff_after_failures=FREE,
                                 login_backoff_base_seconds=60)
    p = await start_platform(settings)
    edge = await start_edge(p)
    api = Api(p, smtp_sink)
    yield api, edge
    await api.channel.close()
    await edge.stop(grace=1)
    await p.stop(grace=1)


def forged(i: int) -> tuple[tuple[str, str], ...]:
    return ((client_address.CLIENT_ADDRESS_HEADER, f"203.0.113.{i}"), ("x-forwarded-for", f"198.51.100.{i}"),
            (client_address.EDGE_KEY_HEADER, "guessed"))


async def test_a_direct_caller_cannot_claim_another_address(platform):
    api, _ = platform
    who = await api.signup("Direct")
    codes = []
    for i in range(FREE + 1):
        try:
            await api.auth.Login(auth_pb2.LoginRequest(email=who.email, password="wrong password!"), metadata=forged(i))
        except grpc.aio.AioRpcError as e:
            codes.append(e.code())
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * FREE + [grpc.StatusCode.RESOURCE_EXHAUSTED], \
        "every forged address counted as the caller's own"


async def test_clients_of_the_edge_cannot_claim_another_address(platform):
    api, edge = platform
    rest_user, grpc_user = await api.signup("Rest"), await api.signup("Grpc")
    async with aiohttp.ClientSession() as http:
        statuses = []
        for i in range(FREE + 1):
            async with http.post(f"http://127.0.0.1:{edge.http_port}/v1/auth/login", headers=dict(forged(i)),
                                 json={"email": rest_user.email, "password": "wrong password!"}) as r:
                statuses.append(r.status)
                body, retry_after = await r.json(), r.headers.get("Retry-After")
        assert statuses == [401] * FREE + [429]
        # The service's own wait, told truthfully: Retry-After is its RetryInfo, not the edge's window.
        (info,) = [d for d in body["details"] if d["@type"].endswith("RetryInfo")]
        assert retry_after == str(math.ceil(float(info["retryDelay"].removesuffix("s")))) and int(retry_after) > 50
    # The owner, from another address (the edge sees 127.0.0.2), is not held back by it.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as http:
        async with http.post(f"http://127.0.0.1:{edge.http_port}/v1/auth/login",
                             json={"email": rest_user.email, "password": PASSWORD}) as r:
            assert r.status == 200
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.grpc_port}") as ch:
        auth = auth_pb2_grpc.AuthServiceStub(ch)
        codes = []
        for i in range(FREE + 1):
            try:
                await auth.Login(auth_pb2.LoginRequest(email=grpc_user.email, password="wrong password!"),
                                 metadata=forged(i))
            except grpc.aio.AioRpcError as e:
                codes.append(e.code())
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * FREE + [grpc.StatusCode.RESOURCE_EXHAUSTED]


def test_the_rule():
    key = "k" * 32
    sent = client_address.forwarded([("authorization", "Bearer t"), (client_address.CLIENT_ADDRESS_HEADER, "6.6.6.6"),
                                     (client_address.EDGE_KEY_HEADER.upper(), "x")], "192.0.2.7", key)
    assert sent == (("authorization", "Bearer t"), (client_address.CLIENT_ADDRESS_HEADER, "192.0.2.7"),
                    (client_address.EDGE_KEY_HEADER, key)), "the client's copies are removed"
    assert client_address.resolve(dict(sent), "ipv4:10.1.2.3:5555", key) == "192.0.2.7"
    assert client_address.resolve(dict(sent), "ipv4:10.1.2.3:5555", "other") == "10.1.2.3"
    assert client_address.resolve({client_address.CLIENT_ADDRESS_HEADER: "1.1.1.1"}, "ipv6:[::1]:80", key) == "::1"
    assert client_address.peer_host(None) == "unknown"


def test_addresses_have_one_spelling():
    assert client_address.peer_host("ipv6:%5B::1%5D:55484") == "::1", "gRPC encodes the brackets"
    assert client_address.peer_host("ipv6:[2001:DB8:0::1]:80") == "2001:db8::1"
    assert client_address.peer_host("ipv6:%5B::ffff:192.0.2.9%5D:1") == "192.0.2.9", "IPv4 seen by a dual-stack port"
    assert client_address.peer_host("ipv4:192.0.2.9:443") == "192.0.2.9"
    assert client_address.peer_host("unix:/run/x.sock") == "unix:/run/x.sock"
    sent = client_address.forwarded([("x-petplatform-user", "u1"), ("X-PetPlatform-Anything", "x"), ("a", "b")],
                                    "192.0.2.7", "k" * 32)
    assert [k for k, _ in sent] == ["a", client_address.CLIENT_ADDRESS_HEADER, client_address.EDGE_KEY_HEADER], \
        "no header of the platform's own passes the edge from a client"


def test_the_edge_takes_the_rightmost_forwarded_entry_of_all_lines(tmp_path, smtp_sink):
    from gateway.policy import EdgePolicy
    from mesh.cache import MemoryCache
    settings = embedded_settings(tmp_path, smtp_sink, trust_forwarded_for=True)
    policy = EdgePolicy(settings, MemoryCache(), None, "k" * 32)  # type: ignore[arg-type]
    # A proxy that adds a line of its own leaves the client's line first: the last entry still counts.
    assert policy.client_ip("10.0.0.1", ["6.6.6.6", "203.0.113.9"]) == "203.0.113.9"
    assert policy.client_ip("10.0.0.1", ["6.6.6.6, 203.0.113.9"]) == "203.0.113.9"
    assert policy.client_ip("::ffff:10.0.0.1", []) == "10.0.0.1"
