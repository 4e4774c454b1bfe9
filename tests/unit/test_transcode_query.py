"""Query strings carry maps, oneofs and repeated nested messages exactly as a JSON body does.
The request type is compiled here so every shape is present, whatever the contracts hold today."""
from __future__ import annotations

import json
import pathlib
import types

from google.protobuf import descriptor_pb2, descriptor_pool, json_format
from grpc_tools import protoc
import grpc
import pytest

from gateway.transcode import build_request
from mesh.errors import ApiError

PROBE = """
syntax = "proto3";
package probe;
message Inner { string a = 1; int32 n = 2; }
enum Color { COLOR_UNSPECIFIED = 0; COLOR_RED = 1; }
message Probe {
  map<string, string> labels = 1;
  map<string, Inner> inners = 2;
  oneof choice { string word = 3; Inner inner = 4; }
  repeated Inner items = 5;
  repeated Color colors = 6;
  Inner single = 7;
  map<string, int32> counts = 8;
}
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> types.SimpleNamespace:
    d = tmp_path_factory.mktemp("probe")
    (d / "probe.proto").write_text(PROBE)
    assert protoc.main(["protoc", f"-I{d}", f"--descriptor_set_out={d / 'set.binpb'}", "probe.proto"]) == 0
    pool = descriptor_pool.DescriptorPool()
    for f in descriptor_pb2.FileDescriptorSet.FromString(pathlib.Path(d / "set.binpb").read_bytes()).file:
        pool.Add(f)
    method = types.SimpleNamespace(input_type=pool.FindMessageTypeByName("probe.Probe"))
    return types.SimpleNamespace(query=types.SimpleNamespace(method=method, body=""),
                                 body=types.SimpleNamespace(method=method, body="*"))


def from_query(probe, *pairs):
    return build_request(probe.query, {}, pairs, b"")


def from_body(probe, payload: dict):
    return build_request(probe.body, {}, (), json.dumps(payload).encode())


def refused(fn, *args) -> ApiError:
    with pytest.raises(ApiError) as e:
        fn(*args)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return e.value


def test_maps_from_the_query_string(probe):
    q = from_query(probe, ("labels[team]", "blue"), ("labels[a b]", "c"), ("inners[x].a", "1"), ("inners[x].n", "2"),
                   ("counts[k]", "7"))
    assert q == from_body(probe, {"labels": {"team": "blue", "a b": "c"}, "inners": {"x": {"a": "1", "n": 2}},
                                  "counts": {"k": 7}})
    assert q.inners["x"].n == 2 and q.counts["k"] == 7
    refused(from_query, probe, ("labels", "x"))  # a map needs its key
    refused(from_query, probe, ("inners[x]", "1"))  # a message value needs its fields
    refused(from_query, probe, ("counts[k]", "many"))  # wrong type: 400, not 500


def test_oneofs_from_the_query_string(probe):
    assert from_query(probe, ("inner.a", "z")) == from_body(probe, {"inner": {"a": "z"}})
    assert from_query(probe, ("word", "hi")).WhichOneof("choice") == "word"
    both_q = refused(from_query, probe, ("word", "hi"), ("inner.a", "z"))
    both_b = refused(from_body, probe, {"word": "hi", "inner": {"a": "z"}})
    assert both_q.reason == both_b.reason  # the same refusal, whichever way it came


def test_repeated_nested_messages_from_the_query_string(probe):
    q = from_query(probe, ("items[0].a", "first"), ("items[0].n", "1"), ("items[1].a", "second"),
                   ("colors", "COLOR_RED"), ("colors", "1"), ("single.n", "3"))
    assert q == from_body(probe, {"items": [{"a": "first", "n": 1}, {"a": "second"}], "colors": ["COLOR_RED", 1],
                                  "single": {"n": 3}})
    refused(from_query, probe, ("items[1].a", "gap"))  # indexes count up from 0
    refused(from_query, probe, ("items[x].a", "nan"))
    refused(from_query, probe, ("items.a", "no index"))
    refused(from_query, probe, ("items", "whole"))
    refused(from_query, probe, ("single[0].a", "not repeated"))


@pytest.mark.parametrize("pairs", [
    [("labels[k]", "1"), ("labels[k]", "2")],  # a map key twice
    [("items[0].a", "1"), ("items[00].a", "2")],  # the same index spelt twice
    [("items[\u00b2].a", "x")],  # a digit, but not an ASCII one
    [("items[" + "9" * 5000 + "].a", "x")],
    [("inners[k]", "x"), ("inners[k].a", "y")],
    [("single.n", "1"), ("single.n", "2")],
    [("word", "a"), ("word", "b")],
    [("single.n", "1"), ("single.n", "2")],
    [("inner.a", "1"), ("inner.a", "2")],
    [("word", "a\ufffd")],  # %FF decoded
    [("a[", "x")], [("[0]", "x")], [(".a", "x")], [("single..n", "x")], [("single.", "x")], [("", "x")],
])
def test_odd_query_strings_are_refused_as_client_errors(probe, pairs):
    refused(from_query, probe, *pairs)


def test_map_keys_may_hold_dots_and_brackets_open(probe):
    q = from_query(probe, ("labels[a.b]", "x"), ("labels[[k]", "y"), ("inners[v1.2].a", "z"))
    assert dict(q.labels) == {"a.b": "x", "[k": "y"} and q.inners["v1.2"].a == "z"


def test_snake_and_camel_spellings_collide():
    """`pageSize=1&page_size=3` is one field given twice, not a silent last-wins."""
    from gateway.http_rules import bindings
    b = next(x for x in bindings(["petplatform.pet.v1.PetService"]) if x.method.name == "ListPets")
    refused(build_request, b, {}, [("pageSize", "1"), ("page_size", "3")], b"")
    assert build_request(b, {}, [("page_size", "3")], b"").page_size == 3


def test_path_variables_alone_make_the_message_json_would(probe):
    """A call whose path is all it says is made without ParseDict when its variables are plain strings:
    the same message, and the same refusal, either way."""
    cls = type(from_query(probe))

    def from_path(path_vars: dict[str, str]):
        return build_request(probe.query, path_vars, (), b"")

    assert from_path({"word": "pets/abc"}) == json_format.ParseDict({"word": "pets/abc"}, cls())
    assert from_path({"word": "pets/é"}) == json_format.ParseDict({"word": "pets/é"}, cls())
    nested = json_format.ParseDict({"single": {"a": "x", "n": 5}}, cls())
    assert from_path({"single.a": "x", "single.n": "5"}) == nested
    assert from_path({}) == cls()
    assert "surrogate" in refused(from_path, {"word": "a\ud800"}).message.lower()
