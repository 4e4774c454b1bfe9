"""The RankPets response built as protobuf wire bytes by numpy, then parsed once (in C): making 10,000
RankedPet messages one by one in Python costs ten times more than ranking them.

Every RankedPet has the same size here: a pet name is always `pets/` and 32 hex digits (RankPets refuses
any other), and every number is a double written even when 0 (allowed on the wire: the parser reads it as
the default). The layout comes from the contract's descriptor, checked when this module is imported."""
from __future__ import annotations

import numpy as np
import numpy.typing as npt
from google.protobuf.descriptor import FieldDescriptor

from petplatform.recommender.v1 import recommender_pb2

NAME_BYTES = len("pets/") + 32
NUMBERS = ("score", "content", "collaborative", "distance", "compatibility", "popularity", "distance_km")
_FIXED64, _LENGTH_DELIMITED = 1, 2


def _tag(message, field: str, wire_type: int, kind: int) -> int:
    f = message.DESCRIPTOR.fields_by_name[field]
    if f.type != kind or f.number >= 16 or f.is_repeated != (message is recommender_pb2.RankPetsResponse):
        raise TypeError(f"{message.DESCRIPTOR.full_name}.{field} changed: update ml/recommender/wire.py")
    return f.number << 3 | wire_type


_RECORD = np.dtype([("tag", "u1"), ("length", "u1"), ("name_tag", "u1"), ("name_length", "u1"),
                    ("name", f"S{NAME_BYTES}"),
                    *[(f, [("tag", "u1"), ("value", "<f8")]) for f in NUMBERS]])  # packed: no alignment
_PETS_TAG = _tag(recommender_pb2.RankPetsResponse, "pets", _LENGTH_DELIMITED, FieldDescriptor.TYPE_MESSAGE)
_NAME_TAG = _tag(recommender_pb2.RankedPet, "pet", _LENGTH_DELIMITED, FieldDescriptor.TYPE_STRING)
_NUMBER_TAGS = {f: _tag(recommender_pb2.RankedPet, f, _FIXED64, FieldDescriptor.TYPE_DOUBLE) for f in NUMBERS}
assert _RECORD.itemsize - 2 < 128  # the RankedPet's length fits one varint byte


def ranked_pets(names: list[str], columns: dict[str, npt.NDArray[np.float64]]) -> recommender_pb2.RankPetsResponse:
    """A response with one RankedPet per name, in order; `columns`: each of NUMBERS, aligned with names.
    Names must all be pet names (NAME_BYTES long)."""
    records = np.zeros(len(names), _RECORD)
    records["tag"] = _PETS_TAG
    records["length"] = _RECORD.itemsize - 2
    records["name_tag"] = _NAME_TAG
    records["name_length"] = NAME_BYTES
    records["name"] = np.asarray(names, dtype=f"S{NAME_BYTES}")
    for field, tag in _NUMBER_TAGS.items():
        records[field]["tag"] = tag
        records[field]["value"] = columns[field]
    return recommender_pb2.RankPetsResponse.FromString(records.tobytes())
