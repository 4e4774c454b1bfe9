"""The shape of a service registry entry, and the questions everything that lists services asks of
it. The entries themselves live in the composition root (app/registry.py), above mesh."""
from __future__ import annotations

import dataclasses
import graphlib
import importlib
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from google.protobuf import descriptor_pool
from google.protobuf.message import Message

from mesh.config import ConfigError
from mesh.events.types import event_type

if TYPE_CHECKING:
    from mesh.runtime import ServiceModule


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    """One service of the mesh: what it serves, where, whom it calls and which events it moves."""

    name: str  # the target (`--target=NAME`), the peer name and PETPLATFORM_<NAME>_ADDR
    module: str  # "package.module:Class", imported only when the target runs
    contracts: tuple[str, ...]  # full names of the gRPC services it serves
    port: int  # seed port of the per-service deployment
    peers: tuple[str, ...] = ()  # services it calls: they start first and stop last
    emits: tuple[type[Message], ...] = ()  # events it writes to its outbox
    consumes: tuple[type[Message], ...] = ()  # events it subscribes to (durable or live)

    def load(self) -> type[ServiceModule]:
        path, _, cls = self.module.partition(":")
        loaded: type[ServiceModule] = getattr(importlib.import_module(path), cls)
        return loaded

    @property
    def emitted_types(self) -> frozenset[str]:
        return frozenset(event_type(e) for e in self.emits)

    @property
    def consumed_types(self) -> frozenset[str]:
        return frozenset(event_type(e) for e in self.consumes)


class Registry:
    """The entries, checked once: unique names and ports, known peers, no cycles, real contracts."""

    def __init__(self, specs: Iterable[ServiceSpec]):
        listed = list(specs)
        self._specs = {s.name: s for s in listed}
        for what, values in (("name", [s.name for s in listed]), ("seed port", [s.port for s in listed]),
                             ("contract", [c for s in listed for c in s.contracts])):
            if len(values) != len(set(values)):
                raise ValueError(f"two services share a {what}")
        messages: dict[str, str] = {}
        for e in (e for s in listed for e in (*s.emits, *s.consumes)):
            if messages.setdefault(event_type(e), e.DESCRIPTOR.full_name) != e.DESCRIPTOR.full_name:
                raise ValueError(f"routing key {event_type(e)!r} names two messages: {messages[event_type(e)]} "
                                 f"and {e.DESCRIPTOR.full_name}")
        for s in self._specs.values():
            if s.name in ("all", "edge", "web") or not s.name.isidentifier() or s.name != s.name.lower():
                raise ValueError(f"service name {s.name!r}: lower-case identifier, not 'all', 'edge' or 'web'")
            for p in s.peers:
                if p not in self._specs:
                    raise ValueError(f"{s.name}: unknown peer {p!r}")
            for c in s.contracts:
                descriptor_pool.Default().FindServiceByName(c)  # KeyError: the contract was not imported
        self._order = list(graphlib.TopologicalSorter({s.name: s.peers for s in self._specs.values()}).static_order())

    def __iter__(self) -> Iterator[ServiceSpec]:
        return iter(self._specs.values())

    def __getitem__(self, name: str) -> ServiceSpec:
        return self._specs[name]

    @property
    def names(self) -> list[str]:
        return list(self._specs)

    def target(self, target: str) -> list[ServiceSpec]:
        """The services a target runs, dependencies first (peers start before the services calling them):
        all, one service, or several named with commas (`notification,admin`: co-located in one process)."""
        if target == "all":
            return [self._specs[n] for n in self._order]
        names = target.split(",")
        if unknown := [n for n in names if n not in self._specs]:
            raise ValueError(f"unknown target {', '.join(map(repr, unknown))}; choose all, edge, or one or more "
                             f"(comma-separated) of: {', '.join(self._specs)}")
        return [self._specs[n] for n in self._order if n in names]

    @property
    def routes(self) -> dict[str, str]:
        """Full gRPC service name -> the service (peer) serving it."""
        return {c: s.name for s in self._specs.values() for c in s.contracts}

    @property
    def ports(self) -> dict[str, int]:
        return {s.name: s.port for s in self._specs.values()}

    def producers(self, event: str) -> list[str]:
        return [s.name for s in self._specs.values() if event in s.emitted_types]

    def consumers(self, event: str) -> list[str]:
        return [s.name for s in self._specs.values() if event in s.consumed_types]

    def events(self) -> dict[str, type[Message]]:
        """Every event type any service emits or consumes -> its payload message."""
        out: dict[str, type[Message]] = {}
        for s in self._specs.values():
            for e in (*s.emits, *s.consumes):
                out[event_type(e)] = e
        return dict(sorted(out.items()))


# Settings of our own that end in _ADDR without naming a service (none yet): listed here, not guessed.
NOT_SERVICES: frozenset[str] = frozenset()


def peer_addresses(ports: Mapping[str, int], host: str, environ: Mapping[str, str],
                   prefix: str = "PETPLATFORM_") -> dict[str, str]:
    """Each service's address: PETPLATFORM_<NAME>_ADDR, else its seed port on `host`. A variable
    naming no service is an error, so a typo cannot silently send calls to the default."""
    out = {name: f"{host}:{port}" for name, port in ports.items()}
    unknown = []
    for key, value in environ.items():
        if key.startswith(prefix) and key.endswith("_ADDR") and key not in NOT_SERVICES:
            name = key[len(prefix):-len("_ADDR")].lower()
            if name not in ports:
                unknown.append(key)
            elif value:
                out[name] = value
    if unknown:
        known = ", ".join(f"{prefix}{n.upper()}_ADDR" for n in ports)
        raise ConfigError(f"unknown service address {', '.join(sorted(unknown))}; known: {known}")
    return out
