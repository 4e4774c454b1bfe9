"""The edge finds a path's binding by its first two segments (http_rules.Routes): for every path it finds what
trying every binding in order finds, wildcards in the first segments included."""
from __future__ import annotations

import re

from app.registry import REGISTRY
from gateway.http_rules import PathTemplate, Routes, bindings

BINDINGS = bindings(list(REGISTRY.routes))


def _example(pattern: str) -> str:
    """A path the template matches (one segment per `*`, two for `**`)."""
    expanded = re.sub(r"\{([^}=]+)(?:=([^}]+))?\}", lambda m: m.group(2) or "*", pattern)
    return expanded.replace("**", "a/b").replace("*", "x1")


def _matches(candidates, path: str) -> list[tuple[str, str]]:
    return [(b.full_name, b.http_method) for b in candidates if b.template.match(path) is not None]


def _paths(all_bindings) -> list[str]:
    out = ["/", "", "/v1", "/v1/", "/v1/unknown", "/v1/pets", "/other/x/y"]
    for b in all_bindings:
        p = _example(b.template.pattern)
        out += [p, p + "/", p.replace("x1", "a:b"), p.rsplit("/", 1)[0]]
    return out


def test_the_contracts_routes_match_as_trying_each_binding():
    routes = Routes(BINDINGS)
    for path in _paths(BINDINGS):
        assert _matches(routes.candidates(path), path) == _matches(BINDINGS, path), path


def test_wildcards_in_the_first_segments_are_tried_for_every_path():
    # Bindings of the contracts' shape, plus templates whose wildcard comes early.
    wild = [b for b in BINDINGS[:3]]
    made = []
    for b, pattern in zip(wild, ["/v1/{name=**}", "/{x=*}/pets", "/v1/{name=*}:go"], strict=True):
        made.append(type(b)(b.method, "GET", PathTemplate.compile(pattern), "", "", b.access))
    mixed = [*BINDINGS[:10], made[0], *BINDINGS[10:20], made[1], made[2], *BINDINGS[20:]]
    routes = Routes(mixed)
    for path in _paths(mixed) + ["/v2/pets", "/v1/thing:go", "/v1/a/b/c"]:
        assert _matches(routes.candidates(path), path) == _matches(mixed, path), path
