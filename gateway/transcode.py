"""Proto3 JSON <-> protobuf for the REST edge: path variables, body mapping, query parameters."""
from __future__ import annotations

import base64
import functools
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from google.protobuf import descriptor, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from google.rpc import status_pb2
import grpc

from gateway.http_rules import Binding
from gateway.openapi import message_descriptor, message_of
from mesh.limits import check_json_shape
from mesh import errors

# The grpc-gateway table.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.ABORTED: 409, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
CODE_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}
_FD = descriptor.FieldDescriptor


def input_class(b: Binding) -> type[Message]:
    return message_factory.GetMessageClass(b.method.input_type)


def output_class(b: Binding) -> type[Message]:
    return message_factory.GetMessageClass(b.method.output_type)


def _field(msg_desc: descriptor.Descriptor, name: str, where: str) -> descriptor.FieldDescriptor:
    f = msg_desc.fields_by_name.get(name) or next((x for x in msg_desc.fields if x.json_name == name), None)
    if f is None:
        raise errors.invalid_argument((where, f"unknown field {name!r}"), reason="UNKNOWN_FIELD")
    return f


def _scalar(f: descriptor.FieldDescriptor, raw: str, where: str):
    """A query-string value as the JSON value proto3 JSON expects for field f."""
    if "\ufffd" in raw:  # what the URL decoder leaves of bytes that are not UTF-8
        raise errors.invalid_argument((where, "is not valid UTF-8"))
    if f.type == _FD.TYPE_BOOL:
        if raw not in ("true", "false", "1", "0"):
            raise errors.invalid_argument((where, "must be true or false"))
        return raw in ("true", "1")
    return raw  # numbers, enums by name or number, strings, and well-known types all parse from strings


# Repeated messages from the query string are indexed, `field[0].sub=v`; the list is built in order.
MAX_QUERY_INDEX = 100
_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[([^\]]*)\])?(?:\.|$)")
_INDEX = re.compile(r"0|[1-9][0-9]?")


def parse_field_path(text: str, where: str) -> list[tuple[str, str | None]]:
    """`a.b[key].c` -> [(a, None), (b, key), (c, None)]; a map key may hold dots, not `]`."""
    out, pos = [], 0
    while pos < len(text):
        m = _SEGMENT.match(text, pos)
        if m is None or (m.end() == len(text) and text.endswith(".")):
            raise errors.invalid_argument((where, "not a field path (field, field.sub, map[key] or list[0])"),
                                          reason="UNKNOWN_FIELD")
        out.append((m.group(1), m.group(2)))
        pos = m.end()
    if not out:
        raise errors.invalid_argument((where or "query", "empty parameter name"), reason="UNKNOWN_FIELD")
    return out


def _put(tree: dict, msg_desc: descriptor.Descriptor, path: list[tuple[str, str | None]], values: list[str],
         where: str, from_query: bool) -> None:
    """Sets a field path in a JSON tree typed by msg_desc. Map entries are `field[key]` and repeated
    messages `field[index]`, each followed by `.sub` where the value is a message."""
    (head, key), rest = path[0], path[1:]
    f = _field(msg_desc, head, where)
    # One key per field, whichever spelling came first, so `pageSize` and `page_size` collide.
    head = next((k for k in (f.name, f.json_name) if k in tree), head)
    is_map = f.message_type is not None and f.message_type.GetOptions().map_entry
    if key is not None:
        container: Any  # the JSON tree is untyped: a map's dict or a repeated message's list
        slot: Any
        if is_map:
            value_field = message_of(f).fields_by_name["value"]
            container, slot = tree.setdefault(head, {}), key
        elif f.is_repeated and f.type == _FD.TYPE_MESSAGE:
            value_field = f
            container = tree.setdefault(head, [])
            if not _INDEX.fullmatch(key) or int(key) > len(container) or int(key) >= MAX_QUERY_INDEX:
                raise errors.invalid_argument((where, f"indexes of {head} count up from 0, one at a time, "
                                                      f"below {MAX_QUERY_INDEX}"))
            slot = int(key)
            if slot == len(container):
                container.append({})
        else:
            raise errors.invalid_argument((where, f"{head} is neither a map nor a repeated message"))
        if not isinstance(container, (dict, list)):
            raise errors.invalid_argument((where, f"{head} is set twice"))
        if value_field.type == _FD.TYPE_MESSAGE:
            if not rest:
                raise errors.invalid_argument((where, f"{head}[{key}] is a message: set its fields as "
                                                      f"{head}[{key}].<field>"))
            if isinstance(container, dict):  # a map entry is made on first use; list items were appended
                container.setdefault(slot, {})
            _put(container[slot], message_of(value_field), rest, values, where, from_query)
            return
        if rest:
            raise errors.invalid_argument((where, f"{head}[{key}] has no subfields"))
        if slot in container or len(values) > 1:
            raise errors.invalid_argument((where, "is given more than once"))
        container[slot] = _scalar(value_field, values[0], where) if from_query else values[0]
        return
    if is_map:
        raise errors.invalid_argument((where, "map fields are set as field[key]=value"))
    if rest:
        if f.type != _FD.TYPE_MESSAGE or f.is_repeated:
            raise errors.invalid_argument((where, f"{head} has no subfields"))
        sub = tree.setdefault(head, {})
        if not isinstance(sub, dict):
            raise errors.invalid_argument((where, f"{head} is set twice"))
        _put(sub, message_of(f), rest, values, where, from_query)
        return
    if f.type == _FD.TYPE_MESSAGE and not message_of(f).full_name.startswith("google.protobuf."):
        hint = f"{head}[0].<field>" if f.is_repeated else f"{head}.<field>"
        raise errors.invalid_argument((where, f"{head} is a message: set its fields as {hint}"))
    typed = [_scalar(f, v, where) for v in values]
    # Keyed as the client spelled it (both spellings parse), so errors name what the client sent.
    if f.is_repeated:
        tree.setdefault(head, []).extend(typed)
    elif len(typed) > 1 or head in tree:
        raise errors.invalid_argument((where, "is not repeated but was given more than once"))
    else:
        tree[head] = typed[0]


_ABSENT = object()


def _get(tree: dict, msg_desc: descriptor.Descriptor, path: list[tuple[str, str | None]]) -> Any:
    """The value at a field path (of plain fields, as path variables are) in a JSON tree, by either
    spelling, or _ABSENT."""
    node: Any = tree
    desc: descriptor.Descriptor | None = msg_desc
    for name, _ in path:
        f = desc.fields_by_name.get(name) if desc else None
        if not isinstance(node, dict) or f is None:
            return _ABSENT
        key = next((k for k in (f.name, f.json_name) if k in node), None)
        if key is None:
            return _ABSENT
        node, desc = node[key], f.message_type
    return node


def build_request(b: Binding, path_vars: dict[str, str], query: Sequence[tuple[str, str]], body: bytes) -> Message:
    cls = input_class(b)
    desc = message_descriptor(cls)
    if not b.body and not query and (msg := _from_path_alone(cls, desc, path_vars)) is not None:
        return msg
    tree: dict = {}
    if b.body:
        check_json_shape(body)
        try:
            payload = json.loads(body or b"{}")
        except ValueError as e:  # not JSON, not UTF-8, or a number longer than Python converts
            raise errors.invalid_argument(("body", f"malformed JSON: {e}"), reason="MALFORMED_JSON") from None
        if b.body == "*":
            if not isinstance(payload, dict):
                raise errors.invalid_argument(("body", "must be a JSON object"), reason="MALFORMED_JSON")
            tree = payload
        else:
            tree[b.body] = payload
    grouped: dict[str, list[str]] = {}
    for k, v in query:
        grouped.setdefault(k, []).append(v)
    if grouped and b.body == "*":
        raise errors.invalid_argument((next(iter(grouped)), "query parameters are not accepted: the body holds "
                                       "the whole request"), reason="UNKNOWN_FIELD")
    bound = {b.body, *(p.split(".")[0] for p in path_vars)}
    for k, vs in grouped.items():
        path = parse_field_path(k, k)
        if _field(desc, path[0][0], k).name in bound:
            raise errors.invalid_argument((k, "cannot be set from the query string"), reason="UNKNOWN_FIELD")
        _put(tree, desc, path, vs, k, from_query=True)
    for field_path, value in path_vars.items():
        path = parse_field_path(field_path, field_path)
        given = _get(tree, desc, path)
        if given is _ABSENT:
            _put(tree, desc, path, [value], field_path, from_query=False)
        elif given != value:  # a body may repeat what the path says (a resource as GET returned it), not differ
            raise errors.invalid_argument((field_path, f"is {value!r} in the path but {given!r} in the body"))
    msg = cls()
    try:
        json_format.ParseDict(tree, msg)
    except json_format.ParseError as e:
        raise errors.invalid_argument((_where(str(e)), str(e)), reason="INVALID_JSON_VALUE") from None
    return msg


def _from_path_alone(cls: type[Message], desc: descriptor.Descriptor, path_vars: dict[str, str]) -> Message | None:
    """The request of a call whose path is all it says (the usual GET), when each variable is a plain string
    field: what ParseDict makes of it, at a fraction of its cost. None: the general way must do it."""
    for name, value in path_vars.items():
        f = desc.fields_by_name.get(name)  # a dotted path names no field here
        # Not ASCII: ParseDict refuses unpaired surrogates, with its own message.
        if f is None or f.type != _FD.TYPE_STRING or f.is_repeated or not value.isascii():
            return None
    return cls(**path_vars)


def _where(message: str) -> str:
    # json_format names the field ("Failed to parse species field: ..."): keep that as the violation's field.
    marker = "Failed to parse "
    if marker in message:
        return message.split(marker, 1)[1].split(" field", 1)[0]
    return "body"


def render_response(b: Binding, response: Message) -> Any:
    if b.response_body:
        f = response.DESCRIPTOR.fields_by_name[b.response_body]
        if f.type == _FD.TYPE_MESSAGE and not f.is_repeated:
            return to_json(getattr(response, b.response_body))
        return to_json(response).get(f.json_name, [] if f.is_repeated else None)
    return to_json(response)


# --- proto3 JSON out, as json_format.MessageToDict makes it (default options), at a fraction of its cost ---
# json_format decides every field's conversion anew for every value (some 20 µs for one pet, most of it
# deciding); here each message type's conversions are decided once. Types it does not cover (maps,
# extensions, float32, null values, well-known types other than Timestamp, enum values with a JSON name
# of their own) leave the message to json_format itself; tests/unit/test_transcode_json.py compares both.

def to_json(message: Message) -> Any:
    """json_format.MessageToDict(message)."""
    plan = _plan(message.DESCRIPTOR)
    if plan is None:
        return json_format.MessageToDict(message)
    out = {}
    for f, value in message.ListFields():
        name, convert = plan[f.number]
        out[name] = [convert(v) for v in value] if f.is_repeated else convert(value)
    return out


def _double(value: float) -> float | str:
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    return "NaN" if math.isnan(value) else value


def _enum_json_names() -> bool:
    """Whether enum values may carry a JSON name of their own (json_format's `pb.enumvalue.json` option)."""
    try:
        descriptor_pool.Default().FindExtensionByName("pb.enumvalue.json")
    except KeyError:
        return False
    return True


_SAME = {_FD.TYPE_STRING: str, _FD.TYPE_BOOL: bool, **{t: int for t in (
    _FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32, _FD.TYPE_UINT32, _FD.TYPE_FIXED32)}}
_QUOTED = {_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64, _FD.TYPE_UINT64, _FD.TYPE_FIXED64}


@functools.cache
def _plan(desc: descriptor.Descriptor) -> dict[int, tuple[str, Any]] | None:
    """Field number -> (JSON name, conversion of one value), or None where json_format must do it."""
    if desc.full_name.startswith("google.protobuf.") or desc.extension_ranges:
        return None  # well-known types have JSON forms of their own
    plan = {}
    for f in desc.fields:
        convert: Any
        if f.type in _SAME:
            convert = _SAME[f.type]
        elif f.type in _QUOTED:
            convert = str
        elif f.type == _FD.TYPE_DOUBLE:
            convert = _double
        elif f.type == _FD.TYPE_BYTES:
            convert = _base64
        elif f.type == _FD.TYPE_ENUM and f.enum_type is not None:
            if f.enum_type.full_name == "google.protobuf.NullValue" or f.enum_type.is_closed or _enum_json_names():
                return None
            convert = functools.partial(_enum, {v.number: v.name for v in f.enum_type.values})
        elif f.type == _FD.TYPE_MESSAGE and not message_of(f).GetOptions().map_entry:
            sub = message_of(f).full_name
            convert = (_timestamp if sub == "google.protobuf.Timestamp"
                       else json_format.MessageToDict if sub.startswith("google.protobuf.") else to_json)
        else:  # maps, float32 (json_format rounds it to its shortest form), groups
            return None
        plan[f.number] = (f.json_name, convert)
    return plan


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode("utf-8")


def _enum(names: dict[int, str], value: int) -> str | int:
    return names.get(value, value)  # an open enum's unknown number stays a number


def _timestamp(value) -> str:
    return value.ToJsonString()


def status_json(status: status_pb2.Status) -> dict:
    return json_format.MessageToDict(status)


def status_from_error(err: errors.ApiError) -> status_pb2.Status:
    return err.to_status()
