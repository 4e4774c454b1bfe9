"""What one request body may cost the process that receives it (the edge, and every service for
callers that reach it directly), bounded before anything decodes it, and where it is decoded: a
body's work must not hold the event loop that serves every other request.

Both checks only count: a body that is malformed otherwise is left to its decoder, which says how."""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import re
from collections.abc import Callable, Iterator

from google.protobuf import descriptor
import grpc

from mesh import errors

# The decoders recurse (a deep body was a RecursionError), and every element becomes an object (2.6
# million empty JSON objects took ten seconds of CPU; as protobuf, upb takes a third of a second,
# holding the GIL). The contracts nest a few levels and a request holds a few dozen elements; a photo
# is one long string or bytes field, one element.
MAX_DEPTH = 32
MAX_JSON_TOKENS = 20_000
MAX_MESSAGE_FIELDS = 20_000
# Bodies larger than this are decoded on the decoder threads; below it, decoding costs well under a
# millisecond. A few threads: the work is CPU-bound.
INLINE_DECODE_BYTES = 4096
DECODE_THREADS = 2


def decoder_pool() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="decode")


async def decode(pool: concurrent.futures.Executor, size: int, fn, *args):
    """fn(*args), on the decoder threads when the body is larger than INLINE_DECODE_BYTES."""
    if size <= INLINE_DECODE_BYTES:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


def body_too_large(message: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> errors.ApiError:
    """413 over REST; gRPC-Web and gRPC answer RESOURCE_EXHAUSTED, as a gRPC server does."""
    return errors.ApiError(code, message, "BODY_TOO_LARGE")


def too_deep(what: str) -> errors.ApiError:
    return errors.invalid_argument(("body", f"{what} nested deeper than {MAX_DEPTH} levels"), reason="BODY_TOO_DEEP")


class _Budget:
    def __init__(self, limit: int, what: str, code: grpc.StatusCode):
        self.left, self.limit, self.what, self.code = limit, limit, what, code

    def spend(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise body_too_large(f"request body holds more than {self.limit} {self.what}", self.code)


# --- JSON ---

_STRUCTURE = re.compile(rb'[\[\]{},"]')
_WINDOW = 65536  # each search looks this far at most, so no single C call holds the GIL long


def check_json_shape(body: bytes) -> None:
    """Refuses JSON nested deeper than MAX_DEPTH, or holding more than MAX_JSON_TOKENS brackets,
    commas, strings and escapes. It stops as soon as it knows, so its own cost is bounded too."""
    budget = _Budget(MAX_JSON_TOKENS, "JSON tokens", grpc.StatusCode.INVALID_ARGUMENT)
    depth = pos = 0
    while pos < len(body):
        m = _STRUCTURE.search(body, pos, pos + _WINDOW)
        if m is None:  # numbers, literals, spaces
            pos += _WINDOW
            continue
        budget.spend()
        c, pos = m.group(), m.end()
        if c == b'"':  # skip the string, escapes included
            end = body.find(b'"', pos)
            while end >= 0 and (escape := body.find(b"\\", pos, end)) >= 0:
                budget.spend()
                pos = escape + 2
                if pos > end:  # that quote was escaped
                    end = body.find(b'"', pos)
            if end < 0:
                return  # unterminated
            pos = end + 1
        elif c in b"[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise too_deep("JSON")
        elif c in b"]}":
            depth -= 1


# --- protobuf ---

_FD = descriptor.FieldDescriptor
_PACKED_WIDTH = {_FD.TYPE_FIXED32: 4, _FD.TYPE_SFIXED32: 4, _FD.TYPE_FLOAT: 4,
                 _FD.TYPE_FIXED64: 8, _FD.TYPE_SFIXED64: 8, _FD.TYPE_DOUBLE: 8}  # others: varints, 1+ bytes


class _Malformed(Exception):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 70:
        b = data[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if b < 0x80:
            return value, pos
        shift += 7
    raise _Malformed


def check_message_shape(message_type: descriptor.Descriptor, data: bytes) -> None:
    """Refuses a serialized message holding more than MAX_MESSAGE_FIELDS fields (each element of a
    packed list counts) or nested deeper than MAX_DEPTH, by walking its wire format with the contract
    at hand. Unknown fields are skipped whole, as the decoder keeps them: bytes, not objects."""
    if len(data) < min(MAX_DEPTH, MAX_MESSAGE_FIELDS + 1):
        return  # each field, packed element and level of nesting takes a byte at least: no limit is in reach
    budget = _Budget(MAX_MESSAGE_FIELDS, "protobuf fields", grpc.StatusCode.RESOURCE_EXHAUSTED)

    def walk(desc: descriptor.Descriptor | None, pos: int, end: int, depth: int, group: int | None = None) -> int:
        if depth > MAX_DEPTH:
            raise too_deep("protobuf")
        while pos < end:
            tag, pos = _varint(data, pos)
            budget.spend()
            number, wire = tag >> 3, tag & 7
            field = desc.fields_by_number.get(number) if desc else None
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                length, pos = _varint(data, pos)
                if pos + length > end:
                    raise _Malformed
                if field is not None and field.type == _FD.TYPE_MESSAGE:
                    walk(field.message_type, pos, pos + length, depth + 1)
                elif field is not None and field.is_repeated and field.type not in (_FD.TYPE_STRING, _FD.TYPE_BYTES):
                    budget.spend(length // _PACKED_WIDTH.get(field.type, 1))
                pos += length
            elif wire == 3:  # a group: proto3 has none, but the decoder walks unknown ones
                pos = walk(None, pos, end, depth + 1, group=number)
            elif wire == 4 and number == group:
                return pos
            else:
                raise _Malformed
        if group is not None or pos > end:
            raise _Malformed
        return pos

    try:
        walk(message_type, 0, len(data), 1)
    except _Malformed:
        return  # the decoder will say so


# --- open streams ---


class StreamSlots:
    """Open response streams per caller, bounded: the edge per client on one replica, each service per
    caller on one server. A stream takes a slot while it is open and gives it back when it ends."""

    def __init__(self, limit: int, per: str):
        self.limit = limit
        self._per = per
        self._open: collections.Counter[str] = collections.Counter()

    def take(self, caller: str) -> Callable[[], None]:
        """A slot for `caller`, or RESOURCE_EXHAUSTED; returns what gives it back (once)."""
        if self._open[caller] >= self.limit:
            raise errors.resource_exhausted(f"at most {self.limit} open streams per {self._per}: close one first",
                                            "TOO_MANY_STREAMS", 1, limit=self.limit)
        self._open[caller] += 1

        def release() -> None:
            self._open[caller] -= 1
            if self._open[caller] <= 0:
                del self._open[caller]
        return release

    @contextlib.contextmanager
    def hold(self, caller: str) -> Iterator[None]:
        release = self.take(caller)
        try:
            yield
        finally:
            release()
