"""The edge's JSON rendering (transcode.to_json) gives exactly what json_format.MessageToDict gives, for every
message the contracts' HTTP bindings return, each field set to awkward values: unknown enum numbers, 64-bit
integers, non-finite doubles, bytes, timestamps, repeated and nested messages, maps and well-known types."""
from __future__ import annotations

import random

from google.protobuf import descriptor, json_format, message_factory
from google.protobuf.message import Message
import pytest

from app.registry import REGISTRY
from gateway.http_rules import bindings
from gateway.transcode import to_json

_FD = descriptor.FieldDescriptor
STRINGS = ["", "plain", "ünïcødé ✓", 'quote " and \\ backslash', "line\nbreak"]
INTS = [0, 1, -1, 2**31 - 1, -(2**31)]
UINTS = [0, 1, 2**32 - 1]
DOUBLES = [0.0, -0.0, 1.5, 1e300, -2.5e-300, float("inf"), float("-inf"), float("nan")]


def _value(f: descriptor.FieldDescriptor, rnd: random.Random):
    t = f.type
    if t == _FD.TYPE_STRING:
        return rnd.choice(STRINGS)
    if t == _FD.TYPE_BYTES:
        return rnd.randbytes(rnd.randrange(6))
    if t == _FD.TYPE_BOOL:
        return rnd.random() < 0.5
    if t in (_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32):
        return rnd.choice(INTS)
    if t in (_FD.TYPE_UINT32, _FD.TYPE_FIXED32):
        return rnd.choice(UINTS)
    if t in (_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64):
        return rnd.choice([0, -1, 2**53 + 1, -(2**63)])
    if t in (_FD.TYPE_UINT64, _FD.TYPE_FIXED64):
        return rnd.choice([0, 2**64 - 1])
    if t in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return rnd.choice(DOUBLES)
    if t == _FD.TYPE_ENUM:
        return rnd.choice([v.number for v in f.enum_type.values] + [999])  # 999: a number the contract lacks
    raise AssertionError(t)


def _fill(msg: Message, rnd: random.Random, depth: int = 0) -> None:
    full = msg.DESCRIPTOR.full_name
    if full == "google.protobuf.Timestamp":
        msg.seconds = rnd.choice([0, 1_700_000_000, 253402300799])
        msg.nanos = rnd.choice([0, 5_000_000, 123_456_000, 1])
        return
    if full == "google.protobuf.Duration":
        msg.seconds, msg.nanos = rnd.choice([(0, 0), (3, 500_000_000), (-2, -1)])
        return
    if full in ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Any"):
        return  # left empty: their JSON forms are json_format's in both renderings
    for f in msg.DESCRIPTOR.fields:
        if rnd.random() < 0.25:
            continue  # unset: left out of the JSON
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key_f, value_f = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            m = getattr(msg, f.name)
            for _ in range(2):
                key = _value(key_f, rnd)
                if value_f.message_type is not None:
                    if depth < 3:
                        _fill(m[key], rnd, depth + 1)
                else:
                    m[key] = _value(value_f, rnd)
        elif f.type == _FD.TYPE_MESSAGE:
            if depth >= 3:
                continue
            if f.is_repeated:
                for _ in range(rnd.randrange(3)):
                    _fill(getattr(msg, f.name).add(), rnd, depth + 1)
            else:
                sub = getattr(msg, f.name)
                sub.SetInParent()  # set, even if it stays empty
                _fill(sub, rnd, depth + 1)
        elif f.is_repeated:
            getattr(msg, f.name).extend(_value(f, rnd) for _ in range(rnd.randrange(3)))
        else:
            setattr(msg, f.name, _value(f, rnd))


OUTPUTS = sorted({b.method.output_type.full_name: b.method.output_type
                  for b in bindings(list(REGISTRY.routes))}.items())


@pytest.mark.parametrize("desc", [d for _, d in OUTPUTS], ids=[n for n, _ in OUTPUTS])
def test_to_json_is_message_to_dict(desc):
    cls = message_factory.GetMessageClass(desc)
    rnd = random.Random(desc.full_name)
    for _ in range(30):
        msg = cls()
        _fill(msg, rnd)
        expected, got = json_format.MessageToDict(msg), to_json(msg)
        # NaN is not equal to itself: compare the JSON texts.
        assert json_format.json.dumps(got, sort_keys=True) == json_format.json.dumps(expected, sort_keys=True)
        assert list(got) == list(expected)  # and the keys in the same order
