"""OpenAPI 3.1 document of the REST edge, generated from the same descriptors that route it."""
from __future__ import annotations

import functools
import html
import re
from pathlib import Path
from typing import cast

from google.protobuf import descriptor, descriptor_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from gateway.http_rules import Binding
from petplatform.common.v1 import access_pb2

_FD = descriptor.FieldDescriptor
DESCRIPTOR_SET = Path(__file__).resolve().parent.parent / "build" / "descriptors.binpb"
_SCALARS = {
    _FD.TYPE_DOUBLE: {"type": "number", "format": "double"}, _FD.TYPE_FLOAT: {"type": "number", "format": "float"},
    _FD.TYPE_INT32: {"type": "integer", "format": "int32"}, _FD.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _FD.TYPE_SFIXED32: {"type": "integer", "format": "int32"}, _FD.TYPE_UINT32: {"type": "integer", "format": "int64"},
    _FD.TYPE_FIXED32: {"type": "integer", "format": "int64"}, _FD.TYPE_BOOL: {"type": "boolean"},
    _FD.TYPE_STRING: {"type": "string"}, _FD.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
    # proto3 JSON writes 64-bit integers as strings
    _FD.TYPE_INT64: {"type": "string", "format": "int64"}, _FD.TYPE_SINT64: {"type": "string", "format": "int64"},
    _FD.TYPE_SFIXED64: {"type": "string", "format": "int64"}, _FD.TYPE_UINT64: {"type": "string", "format": "uint64"},
    _FD.TYPE_FIXED64: {"type": "string", "format": "uint64"},
}
_WELL_KNOWN: dict[str, dict[str, object]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "comma-separated field paths"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}},
                            "additionalProperties": True},
}


@functools.cache
def comments() -> dict[str, str]:
    """Leading comments of services, methods, messages and fields, from the descriptor set `make gen` builds."""
    out: dict[str, str] = {}
    if not DESCRIPTOR_SET.exists():
        return out
    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    for f in fds.file:
        by_path = {tuple(loc.path): loc.leading_comments.strip() for loc in f.source_code_info.location
                   if loc.leading_comments}
        for si, s in enumerate(f.service):
            for mi, m in enumerate(s.method):
                if c := by_path.get((6, si, 2, mi)):
                    out[f"{f.package}.{s.name}.{m.name}"] = c

        def walk(msgs, prefix, path, by_path=by_path):
            for i, m in enumerate(msgs):
                name = f"{prefix}.{m.name}"
                if c := by_path.get((*path, i)):
                    out[name] = c
                for fi, field in enumerate(m.field):
                    if c := by_path.get((*path, i, 2, fi)):
                        out[f"{name}.{field.name}"] = c
                walk(m.nested_type, name, (*path, i, 3))
        walk(f.message_type, f.package, (4,))
    return out


def message_descriptor(cls: type[Message]) -> descriptor.Descriptor:
    # The stubs type DESCRIPTOR as upb's class or the pure-Python one: the same API either way.
    return cast(descriptor.Descriptor, cls.DESCRIPTOR)


def message_of(f: descriptor.FieldDescriptor) -> descriptor.Descriptor:
    """The message type of a message field."""
    assert f.message_type is not None, f"{f.full_name} is not a message field"
    return f.message_type


class Schemas:
    """JSON Schemas of protobuf messages (proto3 JSON), gathered under components/schemas."""

    def __init__(self):
        self.components: dict[str, dict] = {}

    def field(self, f: descriptor.FieldDescriptor) -> dict:
        if f.message_type and f.message_type.GetOptions().map_entry:
            return {"type": "object", "additionalProperties": self.field(f.message_type.fields_by_name["value"])}
        item: dict[str, object]
        if f.type == _FD.TYPE_MESSAGE:
            item = self.ref(message_of(f))
        elif f.type == _FD.TYPE_ENUM:
            assert f.enum_type is not None
            item = {"type": "string", "enum": [v.name for v in f.enum_type.values]}
        else:
            item = dict(_SCALARS[f.type])
        schema: dict[str, object] = {"type": "array", "items": item} if f.is_repeated else item
        if doc := comments().get(f.full_name):
            schema = {**schema, "description": doc} if "$ref" not in schema else {"allOf": [schema], "description": doc}
        return schema

    def ref(self, m: descriptor.Descriptor) -> dict:
        if m.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[m.full_name])
        if m.full_name not in self.components:
            self.components[m.full_name] = {}  # placeholder first: messages may refer to themselves
            self.components[m.full_name] = {
                "type": "object", "description": comments().get(m.full_name, ""),
                "properties": {f.json_name: self.field(f) for f in m.fields}}
        return {"$ref": f"#/components/schemas/{m.full_name}"}


def openapi_path(b: Binding) -> tuple[str, list[dict]]:
    """`/v1/{name=pets/*/photos/*}` -> `/v1/pets/{pet}/photos/{photo}` with its path parameters."""
    params: list[dict] = []

    def expand(m: re.Match) -> str:
        field, pattern = m.group(1), m.group(2) or "*"
        segments, out = pattern.split("/"), []
        for i, seg in enumerate(segments):
            if seg in ("*", "**"):
                name = segments[i - 1].removesuffix("s") if i else field.replace(".", "_")
                params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"},
                               "description": f"the {{{name}}} segment of `{field}` ({pattern})"})
                out.append(f"{{{name}}}")
            else:
                out.append(seg)
        return "/".join(out)

    return re.sub(r"\{([^}=]+)(?:=([^}]+))?\}", expand, b.template.pattern), params


def _query_params(b: Binding, schemas: Schemas) -> list[dict]:
    if b.body == "*":
        return []
    bound = {v.split(".")[0] for v in b.template.variables} | {b.body}
    out: list[dict[str, object]] = []
    for f in b.method.input_type.fields:
        if f.name in bound:
            continue
        if f.type == _FD.TYPE_MESSAGE and message_of(f).full_name not in _WELL_KNOWN and not f.is_repeated:
            for sub in message_of(f).fields:
                out.append({"name": f"{f.json_name}.{sub.json_name}", "in": "query", "schema": schemas.field(sub)})
            continue
        out.append({"name": f.json_name, "in": "query", "schema": schemas.field(f),
                    **({"explode": True} if f.is_repeated else {})})
    return out


def document(bindings: list[Binding]) -> dict:
    schemas = Schemas()
    status = schemas.ref(message_descriptor(status_pb2.Status))
    paths: dict[str, dict] = {}
    seen: dict[str, int] = {}
    for b in bindings:
        path, params = openapi_path(b)
        params += _query_params(b, schemas)
        op_id = f"{b.method.containing_service.name}_{b.method.name}"
        seen[op_id] = seen.get(op_id, 0) + 1
        op: dict = {
            # additional_bindings get a number: ListPets, ListPets2, ...
            "operationId": op_id + (str(seen[op_id]) if seen[op_id] > 1 else ""),
            "summary": first_sentence(comments().get(b.method.full_name, "")),
            "description": comments().get(b.method.full_name, ""),
            "tags": [b.method.containing_service.name],
            "parameters": params,
            "responses": {
                "200": _success(b, schemas),
                "default": {"description": "Error: google.rpc.Status",
                            "content": {"application/json": {"schema": status}}},
            },
        }
        if b.body:
            body_schema = (schemas.ref(b.method.input_type) if b.body == "*"
                           else schemas.field(b.method.input_type.fields_by_name[b.body]))
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_schema}}}
        if b.access != access_pb2.ACCESS_PUBLIC:
            op["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[b.http_method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Pet Platform API", "version": "v1",
                 "description": "REST/JSON transcoding of the Pet Platform gRPC contracts. Errors are "
                                "google.rpc.Status objects."},
        "paths": {**paths, **_edge_paths(status)},
        "components": {"schemas": schemas.components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }


def _edge_paths(status: dict) -> dict:
    """The edge's own endpoints, which no contract describes."""
    def get(op_id: str, summary: str, content: dict, params: list | None = None) -> dict:
        return {"get": {"operationId": op_id, "summary": summary, "description": summary, "tags": ["Edge"],
                        "parameters": params or [],
                        "responses": {"200": {"description": "OK", "content": content},
                                      "default": {"description": "Error: google.rpc.Status",
                                                  "content": {"application/json": {"schema": status}}}}}}
    obj = {"application/json": {"schema": {"type": "object"}}}
    return {
        "/v1/blobs/{key}": get("Edge_GetBlob", "A stored file, such as a pet photo (the `uri` of a Photo).",
                               {"image/*": {"schema": {"type": "string", "contentMediaType": "image/*"}}},
                               [{"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}]),
        "/healthz": get("Edge_Healthz", "The edge process is alive.", obj),
        "/readyz": get("Edge_Readyz", "Every service behind the edge is serving (503 otherwise).", obj),
        "/asyncapi.json": get("Edge_AsyncApi", "The AsyncAPI document of every event: exchange, routing key, "
                                               "payload, producers and consumers.", obj),
        "/.well-known/jwks.json": get("Edge_Jwks", "The public keys that verify access tokens (JWKS).",
                                      {"application/jwk-set+json": {"schema": {"type": "object"}}}),
        "/verify-email": get("Edge_VerifyEmailPage",
                             "The page the verification email links to; its button confirms the address.",
                             {"text/html": {"schema": {"type": "string"}}},
                             [{"name": "token", "in": "query", "required": True, "schema": {"type": "string"}}]),
    }


def first_sentence(comment: str) -> str:
    """Proto comments wrap lines mid-sentence: the summary is the first sentence, whole."""
    text = " ".join(comment.split())
    end = text.find(". ")
    return text if end < 0 else text[:end + 1]


def _success(b: Binding, schemas: Schemas) -> dict:
    schema = _response_schema(b, schemas)
    if not b.method.server_streaming:
        return {"description": "OK", "content": {"application/json": {"schema": schema}}}
    return {"description": "A stream: one JSON object per line (NDJSON), or Server-Sent Events (`data:` lines) "
                           "when the request accepts text/event-stream. Send `grpc-timeout` (e.g. `30S`) to bound "
                           "it. If it fails after it opened, the last line is `{\"error\": <google.rpc.Status>}` "
                           "(an `event: error` for SSE).",
            "content": {"application/x-ndjson": {"schema": schema},
                        "text/event-stream": {"schema": {"type": "string"}}}}


def _response_schema(b: Binding, schemas: Schemas) -> dict:
    if b.response_body:
        return schemas.field(b.method.output_type.fields_by_name[b.response_body])
    return schemas.ref(b.method.output_type)


def docs_page(spec: dict) -> str:
    """A self-contained page (no scripts, no CDN) listing every operation."""
    rows = []
    for path, ops in spec["paths"].items():
        for verb, op in ops.items():
            lock = " 🔒" if op.get("security") else ""
            rows.append(f"<tr><td><code>{verb.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(op['summary'])}{lock}</td></tr>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Pet Platform API</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{padding:.2em .8em;border-bottom:1px solid #ddd}"
            "</style></head><body><h1>Pet Platform API</h1><p>Machine-readable: <a href='/openapi.json'>"
            "/openapi.json</a> (OpenAPI 3.1). 🔒 needs <code>Authorization: Bearer &lt;access token&gt;</code>."
            "</p><table>" + "".join(rows) + "</table></body></html>")
