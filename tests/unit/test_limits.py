"""What a body may cost the edge (mesh/limits.py), counted before any decoder runs."""
from __future__ import annotations

import json

import pytest

from mesh import limits
from mesh import errors
from petplatform.pet.v1 import pet_pb2
from petplatform.user.v1 import user_pb2


def refusal(check, *args) -> str | None:
    try:
        check(*args)
    except errors.ApiError as e:
        return f"{e.code.name} {e.reason}"
    return None


@pytest.mark.parametrize("body, expected", [
    (b'{"a": [1, 2, {"b": "x,y[z]\\"\\\\"}], "c": "\\\\", "d": "\\u00e9\\""}', None),
    (b"[" * 32 + b"]" * 32, None),
    (b"[" * 33 + b"]" * 33, "INVALID_ARGUMENT BODY_TOO_DEEP"),
    (b'"' + b"[" * 100 + b'"', None),  # brackets in a string are text
    (b'["\\"' + b"[" * 100 + b'"]', None),  # ... after an escaped quote too
    (b'{"a": "' + b"x" * 7_000_000 + b'"}', None),  # a photo: one token
    (b"[" + b"1," * 20_000 + b"1]", "INVALID_ARGUMENT BODY_TOO_LARGE"),
    (b"]" * 50_000, "INVALID_ARGUMENT BODY_TOO_LARGE"),
    (b'""' * 50_000, "INVALID_ARGUMENT BODY_TOO_LARGE"),
    (b'"' + b"\\n" * 50_000 + b'"', "INVALID_ARGUMENT BODY_TOO_LARGE"),
    (b'{"unterminated": "[[[[', None),  # left to the decoder
])
def test_json_shape(body, expected):
    assert refusal(limits.check_json_shape, body) == expected
    if expected is None and body.endswith((b"}", b"]")):
        json.loads(body)


def test_message_shape_follows_the_contract():
    desc = pet_pb2.CreatePetRequest.DESCRIPTOR
    ok = pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(display_name="x", photos=[pet_pb2.Photo()] * 100))
    assert refusal(limits.check_message_shape, desc, ok.SerializeToString()) is None
    flood = pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(photos=[pet_pb2.Photo()] * 20_000))
    assert refusal(limits.check_message_shape, desc, flood.SerializeToString()) == "RESOURCE_EXHAUSTED BODY_TOO_LARGE"
    packed = pet_pb2.ListPetsRequest(species=[1] * 20_001).SerializeToString()
    assert refusal(limits.check_message_shape, pet_pb2.ListPetsRequest.DESCRIPTOR, packed) == \
        "RESOURCE_EXHAUSTED BODY_TOO_LARGE"
    photo = pet_pb2.UploadPetPhotoRequest(parent="pets/x", content=b"\0" * 7_000_000).SerializeToString()
    assert refusal(limits.check_message_shape, pet_pb2.UploadPetPhotoRequest.DESCRIPTOR, photo) is None
    user = user_pb2.UpdateUserRequest(user=user_pb2.User(preferences=user_pb2.Preferences(species=[1] * 20_001)))
    assert refusal(limits.check_message_shape, user_pb2.UpdateUserRequest.DESCRIPTOR, user.SerializeToString()) == \
        "RESOURCE_EXHAUSTED BODY_TOO_LARGE", "nested packed lists count too"


def test_message_shape_counts_what_the_contract_does_not_know():
    desc = pet_pb2.GetPetRequest.DESCRIPTOR
    unknown = b"\x98\x06\x01" * 20_001  # field 99, varint: kept as unknown, still walked
    assert refusal(limits.check_message_shape, desc, unknown) == "RESOURCE_EXHAUSTED BODY_TOO_LARGE"
    skipped = b"\x9a\x06\x80\x80\x04" + b"\x08\x01" * 32768  # field 99, 64 KiB of bytes: skipped whole
    assert refusal(limits.check_message_shape, desc, skipped) is None
    groups = b"\x0b" * 33 + b"\x0c" * 33  # unknown groups nest too
    assert refusal(limits.check_message_shape, desc, groups) == "INVALID_ARGUMENT BODY_TOO_DEEP"
    for malformed in (b"\x0a\xff", b"\x0b", b"\x0c", b"\x0f", b"\x80" * 11):  # the decoder will say so
        assert refusal(limits.check_message_shape, desc, malformed) is None

