"""Edge policy shared by REST, gRPC-Web and gRPC pass-through: who the client is, whether it may
come in (IP lists), whether it is signed in (JWT), and how much it may call (rate limit)."""
from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
from collections.abc import Callable, Iterable, Sequence

from mesh import client_address, errors, limits, tracing
from mesh.config import Settings
from mesh.principal import Principal, TokenVerifier
from mesh.cache import Cache

# Clients' addresses repeat: each is parsed once (a pure function of the string).
_normalised = functools.lru_cache(maxsize=4096)(client_address.normalised)


@dataclasses.dataclass
class Admission:
    principal: Principal | None
    limit: int
    remaining: int
    reset_seconds: int
    _release: Callable[[], None] | None = None

    def release(self) -> None:
        """Gives back the stream slot this admission holds, if any (idempotent)."""
        if self._release:
            self._release()
            self._release = None

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset_seconds)}


class Refused(errors.ApiError):
    """A call the policy turned away, with the client's rate-limit state for the response's headers."""

    def __init__(self, err: errors.ApiError, admission: Admission):
        super().__init__(err.code, err.message, err.reason, metadata=err.metadata, details=err.details)
        self.admission = admission


class EdgePolicy:
    def __init__(self, settings: Settings, cache: Cache, verifier: TokenVerifier, edge_key: str):
        self.s = settings
        self.edge_key = edge_key
        self.cache = cache
        self.verifier = verifier
        self._streams = limits.StreamSlots(settings.max_streams_per_client, per="client")  # on this replica
        self.allow = [ipaddress.ip_network(c, strict=False) for c in settings.ip_allow]
        self.deny = [ipaddress.ip_network(c, strict=False) for c in settings.ip_deny]

    def client_ip(self, peer: str | None, forwarded_for: Sequence[str] = ()) -> str:
        """forwarded_for: every X-Forwarded-For line, in order (a proxy may add a line of its own
        rather than extend the client's)."""
        entries = [e.strip() for line in forwarded_for for e in line.split(",")]
        if self.s.trust_forwarded_for and entries and entries[-1]:
            # The rightmost entry is the one our load balancer appended; those left of it are the
            # client's to write, so trusting them would let anyone pick a fresh budget.
            return _normalised(entries[-1])
        return _normalised(peer) if peer else "unknown"

    def forward(self, metadata: Iterable[tuple[str, str]], ip: str) -> tuple[tuple[str, str], ...]:
        """The metadata sent to a service: the caller's, with the client address the edge vouches for, and
        the current trace (unless the caller's metadata carries one)."""
        return tracing.outgoing_metadata(client_address.forwarded(metadata, ip, self.edge_key))

    def check_ip(self, ip: str) -> None:
        if not self.deny and not self.allow:
            return  # no lists: every address may come in
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            addr = None
        if addr is not None and any(addr in n for n in self.deny):
            raise errors.permission_denied("your address is not allowed", "IP_DENIED")
        if self.allow and (addr is None or not any(addr in n for n in self.allow)):
            raise errors.permission_denied("your address is not allowed", "IP_NOT_ALLOWED")

    async def admit(self, ip: str, authorization: str | None, access: int, streaming: bool = False) -> Admission:
        """Authenticates (where the method needs it) and counts the call against the client's budget.
        A stream also takes one of the client's stream slots on this replica: release() gives it back."""
        self.check_ip(ip)
        try:
            principal = await self.verifier.authenticate(authorization, access)
        except errors.ApiError:
            # Refused calls count against the address too, so floods of bad tokens meet the limit.
            await self._count(f"ip:{ip}")
            raise
        client = f"user:{principal.user_id}" if principal else f"ip:{ip}"
        admission = await self._count(client, principal)
        if streaming:
            try:
                admission._release = self._streams.take(client)
            except errors.ApiError as e:
                raise Refused(e, admission) from None
        return admission

    async def _count(self, client: str, principal: Principal | None = None) -> Admission:
        """One more call in the client's window; RESOURCE_EXHAUSTED once over the limit."""
        count, reset = await self.cache.incr(f"ratelimit:{client}", self.s.rate_limit_window_seconds)
        limit = self.s.rate_limit_per_minute
        admission = Admission(principal, limit, max(0, limit - count), max(1, math.ceil(reset)))
        if count > limit:
            raise Refused(errors.resource_exhausted(f"rate limit of {limit} requests per minute exceeded",
                                                    "RATE_LIMITED", admission.reset_seconds, limit=limit), admission)
        return admission

