"""One rule for the client's address, for the whole platform: the edge determines it (its peer, or
the rightmost X-Forwarded-For entry its own load balancer wrote) and passes it to the services in a
header it sets itself, removing any copy the client sent. Services trust that header only when the
call carries the edge's key; any other caller is known by its own peer address."""
from __future__ import annotations

import contextvars
import functools
import hmac
import ipaddress
import urllib.parse
from collections.abc import Iterable, Mapping

CLIENT_ADDRESS_HEADER = "x-petplatform-client-address"
EDGE_KEY_HEADER = "x-petplatform-edge-key"
OURS = "x-petplatform-"  # the platform's own headers: no client may send any of them through the edge

_current: contextvars.ContextVar[str] = contextvars.ContextVar("client_address", default="unknown")


def normalised(address: str) -> str:
    """One spelling per address, so one client is one key everywhere (rate limits, throttles, lists):
    IPv6 compressed, IPv4-mapped IPv6 as IPv4. Anything else is kept as it is."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return address.strip()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.compressed


@functools.lru_cache(maxsize=4096)  # one parse per connection, not per call: a peer string names a connection
def peer_host(peer: str | None) -> str:
    """The address of a gRPC peer string: `ipv4:1.2.3.4:5678`, `ipv6:%5B::1%5D:5678` (gRPC encodes
    the brackets), `ipv6:[::1]:5678`."""
    if not peer:
        return "unknown"
    kind, _, rest = urllib.parse.unquote(peer).partition(":")
    if kind == "ipv4":
        return normalised(rest.rsplit(":", 1)[0])
    if kind == "ipv6":
        return normalised(rest.rsplit("]", 1)[0] if rest.startswith("[") else rest)
    return peer


def forwarded(metadata: Iterable[tuple[str, str]], address: str, edge_key: str) -> tuple[tuple[str, str], ...]:
    """What the edge sends on: the caller's metadata without our headers, then the address and the key."""
    kept = tuple((k, v) for k, v in metadata if not k.lower().startswith(OURS))
    return (*kept, (CLIENT_ADDRESS_HEADER, address), (EDGE_KEY_HEADER, edge_key))


def resolve(metadata: Mapping[str, str], peer: str | None, edge_key: str) -> str:
    """The client's address as a service sees it: the edge's word when the edge's key vouches for it."""
    claimed = metadata.get(CLIENT_ADDRESS_HEADER)
    if claimed and hmac.compare_digest(metadata.get(EDGE_KEY_HEADER, "").encode(), edge_key.encode()):
        return claimed
    return peer_host(peer)


def bind(address: str) -> None:
    _current.set(address)


def current() -> str:
    """The address of the client of the RPC being served (set by the server interceptor)."""
    return _current.get()
