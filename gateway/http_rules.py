"""HTTP bindings read from the contracts' google.api.http annotations: the edge has no hand-written routes."""
from __future__ import annotations

import dataclasses
import re

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, descriptor_pool

from mesh.interceptor import method_access

_VAR = re.compile(r"\{([^}=]+)(?:=([^}]+))?\}")


@dataclasses.dataclass(frozen=True)
class PathTemplate:
    """A compiled google.api.http path template, e.g. `/v1/{name=pets/*}/photos:upload`."""

    pattern: str
    regex: re.Pattern
    variables: tuple[str, ...]  # field paths, in group order

    @classmethod
    def compile(cls, pattern: str) -> PathTemplate:
        path, verb = pattern, ""
        colon = pattern.rfind(":")
        if colon > pattern.rfind("}") and colon > pattern.rfind("/"):
            path, verb = pattern[:colon], pattern[colon:]
        regex, pos = "", 0
        variables: list[str] = []
        for m in _VAR.finditer(path):
            regex += _segments(path[pos:m.start()])
            regex += f"(?P<v{len(variables)}>{_segments(m.group(2) or '*')})"
            variables.append(m.group(1))
            pos = m.end()
        regex += _segments(path[pos:]) + re.escape(verb)
        return cls(pattern, re.compile(f"^{regex}$"), tuple(variables))

    @property
    def route_key(self) -> str | None:
        """route_key(path) of every path this template matches, if its first two segments are literal."""
        expanded = _VAR.sub(lambda m: m.group(2) or "*", self.pattern)
        literal = expanded.split("*", 1)[0]
        if "*" in expanded and literal.count("/") < 3:  # a wildcard in the first two segments
            return None
        return route_key(literal)

    def match(self, path: str) -> dict[str, str] | None:
        m = self.regex.match(path)
        if m is None:
            return None
        return {field: m.group(f"v{i}") for i, field in enumerate(self.variables)}


def route_key(path: str) -> str:
    """The first two segments of a path, `/v1/pets/x:y` -> `/v1/pets`: what the edge looks its routes up by."""
    return "/".join(path.split("/", 3)[:3])


def _segments(text: str) -> str:
    parts = []
    for seg in text.split("/"):
        # A segment never holds the ":verb" of a custom method, so `{name=a/*}` leaves `a/x:verb` alone.
        parts.append("[^/:]+" if seg == "*" else ".+" if seg == "**" else re.escape(seg))
    return "/".join(parts)


@dataclasses.dataclass(frozen=True)
class Binding:
    method: descriptor.MethodDescriptor
    http_method: str
    template: PathTemplate
    body: str  # "", "*" or a top-level field name
    response_body: str
    access: int

    @property
    def full_name(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def service(self) -> str:
        """The full name of the gRPC service it belongs to."""
        return self.method.containing_service.full_name


def _rules(rule: http_pb2.HttpRule):
    yield rule
    yield from rule.additional_bindings


def bindings(service_names: list[str]) -> list[Binding]:
    out = []
    for name in service_names:
        service = descriptor_pool.Default().FindServiceByName(name)
        for m in service.methods:
            if m.client_streaming:
                continue  # bidi and client streams have their server-streaming + unary twins
            rule = m.GetOptions().Extensions[annotations_pb2.http]
            for r in _rules(rule):
                kind = r.WhichOneof("pattern")
                if kind is None:
                    continue
                pattern = r.custom.path if kind == "custom" else getattr(r, kind)
                verb = r.custom.kind if kind == "custom" else kind.upper()
                out.append(Binding(m, verb, PathTemplate.compile(pattern), r.body, r.response_body,
                                   method_access(f"/{name}/{m.name}")))
    return out


class Routes:
    """The bindings a path may match, found by its route_key rather than by trying every template: each
    list keeps the bindings' order (the first match wins), and those with a wildcard in their first two
    segments are in every list."""

    def __init__(self, bindings: list[Binding]):
        keys = {b.template.route_key for b in bindings} - {None}
        self._by_key = {k: [b for b in bindings if b.template.route_key in (k, None)] for k in keys}
        self._wild = [b for b in bindings if b.template.route_key is None]

    def candidates(self, path: str) -> list[Binding]:
        return self._by_key.get(route_key(path), self._wild)
