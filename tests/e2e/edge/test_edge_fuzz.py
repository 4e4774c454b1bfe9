"""Generated requests through the real edge, drawn from the contracts' HTTP bindings: whatever a client
sends, over REST or gRPC-Web, the answer is never a server error (5xx, INTERNAL, UNKNOWN)."""
from __future__ import annotations

import base64
import dataclasses
import json
import re
import struct
import urllib.parse

import aiohttp
from google.protobuf import descriptor, message_factory
from hypothesis import HealthCheck, given, settings, strategies as st
import pytest
import yarl

from gateway.http_rules import Binding
from petplatform.pet.v1 import pet_pb2
from tests.support.platform import Api, Session, embedded_settings, start_edge, start_platform

_FD = descriptor.FieldDescriptor
FUZZ = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# What a server fault looks like in gRPC terms; everything else is an answer.
SERVER_FAULTS = {"2", "4", "12", "13", "14", "15"}  # UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, ...

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
junk = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=6)
# Mostly plausible values, so that requests get past the first check and reach the code behind it.
EDGES = [0, -1, 1, 2, 12, 100, 2400, 2401, 100000, 2**31 - 1, -2**31, 2**31, 2**32, 2**63 - 1, 2**64]
integers = st.integers(-5, 300) | st.sampled_from(EDGES)
floats = st.floats(-200, 200) | st.sampled_from([0.0, -0.0, 90.0, -180.0, 20000.0, 1e308, float("inf"), float("nan")])
NAMES = ["", "Mochi", "Shiba Inu", "create_time desc", "distance", "*", "x" * 300, "a\x00b", "pets/" + "0" * 32,
         "users/" + "0" * 32, "me", "pets/me", "SPECIES_DOG", "STATUS_PENDING", "2024-01-01"]
strings = st.sampled_from(NAMES) | text


def fields(desc: descriptor.Descriptor):
    """A few of a message's fields: most requests set few, and each more is one more chance to be refused."""
    if not desc.fields:
        return st.just([])
    return st.lists(st.sampled_from(list(desc.fields)), max_size=3, unique_by=lambda f: f.name)


@dataclasses.dataclass(repr=False)  # failing examples print the request, not this
class Target:
    http: aiohttp.ClientSession
    url: str
    bindings: list[Binding]
    session: Session
    own_pet: str  # the id of a pet the session owns


@pytest.fixture(scope="module")
async def fuzzed(tmp_path_factory, smtp_sink):
    """A platform and edge of their own: no rate limit in the way, a pet of the caller's to aim at."""
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("fuzz"), smtp_sink,
                                                      rate_limit_per_minute=1_000_000))
    edge = await start_edge(platform)
    api = Api(platform, smtp_sink)
    session = await api.signup("Fuzz")
    pet = (await api.pet.CreatePet(pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(display_name="Target", species=1)),
                                   metadata=session.md)).pet
    async with aiohttp.ClientSession() as http:
        yield Target(http, f"http://127.0.0.1:{edge.http_port}", edge.bindings, session, pet.name.split("/")[1])
    await api.channel.close()
    await edge.stop(grace=1)
    await platform.stop(grace=1)


def json_field(f: descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy:
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        return st.dictionaries(text, json_value(f.message_type.fields_by_name["value"], depth), max_size=3)
    one = json_value(f, depth)
    return st.lists(one, max_size=3) if f.is_repeated else one


def json_value(f: descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy:
    if f.type == _FD.TYPE_MESSAGE:
        name = f.message_type.full_name
        if name == "google.protobuf.Timestamp":
            return st.sampled_from(["2024-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                                    "2024-13-45T99:00:00Z", "-1"]) | text
        if name == "google.protobuf.FieldMask":
            return st.lists(st.sampled_from([x.json_name for x in f.containing_type.fields] + ["*", "a_b", ""]),
                            max_size=3).map(",".join) | text
        return json_message(f.message_type, depth + 1) if depth < 3 else st.just({})
    if f.type == _FD.TYPE_ENUM:
        return st.sampled_from([v.name for v in f.enum_type.values]) | st.integers(-3, 30) | text
    if f.type == _FD.TYPE_BOOL:
        return st.booleans() | st.sampled_from(["true", 1])
    if f.type == _FD.TYPE_STRING:
        return strings
    if f.type == _FD.TYPE_BYTES:
        return st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()) | text
    if f.type in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return floats.filter(lambda x: x == x and abs(x) != float("inf")) | st.sampled_from(["NaN", "-Infinity"])
    return integers | integers.map(str) | st.sampled_from(["1e999", "0x10", "", "1.5"])


@st.composite
def json_message(draw, desc: descriptor.Descriptor, depth: int = 0):
    """Either spelling of each field; now and then a value of the wrong kind altogether."""
    return {draw(st.sampled_from([f.json_name, f.name])):
            draw(st.integers(0, 9).flatmap(lambda n, f=f: junk if n == 0 else json_field(f, depth)))
            for f in draw(fields(desc))}


def proto_value(f: descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy:
    t = f.type
    if t == _FD.TYPE_MESSAGE:
        return proto_message(f.message_type, depth + 1) if depth < 3 else st.just(None)
    if t == _FD.TYPE_STRING:
        return strings
    if t == _FD.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == _FD.TYPE_BOOL:
        return st.booleans()
    if t in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return floats.map(lambda x: x if t == _FD.TYPE_DOUBLE or abs(x) < 3e38 or x != x else float("inf"))
    if t == _FD.TYPE_ENUM:
        return st.integers(-3, 30)
    signed = t in (_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32, _FD.TYPE_INT64, _FD.TYPE_SINT64,
                   _FD.TYPE_SFIXED64)
    bits = 32 if t in (_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32, _FD.TYPE_UINT32, _FD.TYPE_FIXED32) else 64
    lo, hi = (-2**(bits - 1), 2**(bits - 1) - 1) if signed else (0, 2**bits - 1)
    return integers.filter(lambda n: lo <= n <= hi)


@st.composite
def proto_message(draw, desc: descriptor.Descriptor, depth: int = 0):
    m = message_factory.GetMessageClass(desc)()
    for f in draw(fields(desc)):
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            continue
        values = [v for v in draw(st.lists(proto_value(f, depth), min_size=1, max_size=3 if f.is_repeated else 1))
                  if v is not None]
        for v in values:
            if f.is_repeated:
                getattr(m, f.name).add().CopyFrom(v) if f.type == _FD.TYPE_MESSAGE else getattr(m, f.name).append(v)
            else:
                getattr(m, f.name).CopyFrom(v) if f.type == _FD.TYPE_MESSAGE else setattr(m, f.name, v)
    return m


def path_segment(own_pet: str) -> st.SearchStrategy:
    return st.sampled_from([own_pet, "0" * 32, "me", "-", "a" * 32]) | text.filter(lambda s: "/" not in s)


@st.composite
def rest_requests(draw, bindings: list[Binding], own_pet: str):
    b = draw(st.sampled_from(bindings))

    def variable(m: re.Match) -> str:  # `{name=pets/*}`: each `*` a drawn segment
        return "/".join(urllib.parse.quote(draw(path_segment(own_pet)), safe="") if seg == "*" else seg
                        for seg in (m.group(2) or "*").split("/"))
    path = re.sub(r"\{([^}=]+)(?:=([^}]+))?\}", variable, b.template.pattern)
    desc = b.method.input_type
    query = []
    if b.body != "*":
        names = [f.json_name for f in desc.fields] + [f"{f.json_name}.{s.json_name}" for f in desc.fields
                                                      if f.message_type for s in f.message_type.fields]
        values = strings | integers.map(str) | floats.map(str) | st.sampled_from(["true", "SPECIES_DOG"])
        keys = st.sampled_from(names) | text if names else text
        query = draw(st.lists(st.tuples(keys, values), max_size=4))
    body = None
    if b.body:
        target = desc if b.body == "*" else desc.fields_by_name[b.body].message_type
        body = draw(json_message(target)) if target is not None else draw(junk)
    method = draw(st.sampled_from([b.http_method, b.http_method, "HEAD" if b.http_method == "GET" else "PUT"]))
    return method, path, query, body, draw(st.booleans())


@FUZZ
@given(data=st.data())
async def test_generated_rest_requests_never_get_a_server_error(fuzzed, data):
    method, path, query, body, signed_in = data.draw(rest_requests(fuzzed.bindings, fuzzed.own_pet))
    headers = {"Authorization": f"Bearer {fuzzed.session.access_token}"} if signed_in else {}
    target = yarl.URL(fuzzed.url + path + ("?" + urllib.parse.urlencode(query) if query else ""), encoded=True)
    raw = None if body is None else json.dumps(body).encode()
    headers["Content-Type"] = "application/json"
    async with fuzzed.http.request(method, target, data=raw, headers=headers) as r:
        assert r.status < 500, (method, path, query, body, r.status, await r.text())
        if r.status >= 400 and method != "HEAD":
            err = await r.json()
            assert {"code", "message"} <= set(err) and err["code"] not in (2, 13, 15)


@FUZZ
@given(data=st.data())
async def test_generated_grpc_web_calls_never_get_a_server_error(fuzzed, data):
    method = data.draw(st.sampled_from(sorted({b.method for b in fuzzed.bindings}, key=lambda m: m.full_name)))
    message = data.draw(proto_message(method.input_type).map(lambda m: m.SerializeToString()) | st.binary(max_size=40))
    headers = {"Content-Type": "application/grpc-web+proto"}
    if data.draw(st.booleans()):
        headers["Authorization"] = f"Bearer {fuzzed.session.access_token}"
    path = f"/{method.containing_service.full_name}/{method.name}"
    framed = struct.pack(">BI", 0, len(message)) + message
    async with fuzzed.http.post(fuzzed.url + path, data=framed, headers=headers) as r:
        assert r.status == 200
        if method.server_streaming and "grpc-status" not in r.headers:
            return  # the stream opened: it was accepted
        body = await r.read()
        status = r.headers.get("grpc-status") or body.rsplit(b"grpc-status: ", 1)[1].split(b"\r\n")[0].decode()
        assert status not in SERVER_FAULTS, (path, message, r.headers.get("grpc-message"))
