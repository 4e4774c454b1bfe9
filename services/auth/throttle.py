"""Sign-in throttling: how many password guesses are checked, for whom, and when.

Each attempt takes its slots atomically (cache incr) before the password is checked, so parallel
attempts cannot all slip through. A refused attempt gives its slots back: asking early never makes
the wait longer, and the wait it is told is the time until every slot it needs is free.

- account and address together: `login_backoff_after_failures` failures, then an exponential
  back-off between attempts (base, 2 x base, 4 x base ... up to the cap). This stops a guesser and
  nobody else.
- account, from every address: past `login_max_failures_per_account`, one attempt per slow interval,
  so an attack spread over many addresses is slowed and the account never locked.
- address, across accounts: the same past `login_max_failures_per_ip`, high enough for a NAT.
An address the account signed in from recently skips the last two: an attack from elsewhere cannot
keep the owner out.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

from mesh import errors
from mesh.cache import Cache
from mesh.config import Settings


@dataclasses.dataclass
class _Limit:
    key: str
    free: int  # the free-th attempt and later ones must each take the gate
    delay: Callable[[int], float]  # how long a taken gate stays closed, by attempts past `free`


@dataclasses.dataclass
class Attempt:
    """The slots one sign-in attempt holds while its password is checked."""

    pair: str
    known: str
    counters: list[str] = dataclasses.field(default_factory=list)
    gates: list[str] = dataclasses.field(default_factory=list)


class LoginThrottle:
    def __init__(self, cache: Cache, settings: Settings):
        self.cache = cache
        self.s = settings

    async def admit(self, email: str, ip: str, reason: str = "LOGIN_THROTTLED") -> Attempt:
        """Takes the attempt's slots, or raises RESOURCE_EXHAUSTED with the time until they are free.
        A failed attempt keeps them; pass a successful one to succeeded()."""
        account = hashlib.sha256(email.encode()).hexdigest()  # no email addresses in the cache
        attempt = Attempt(pair=f"login:pair:{account}:{ip}", known=f"login:known:{account}:{ip}")
        limits = [_Limit(attempt.pair, self.s.login_backoff_after_failures, self._backoff)]
        if await self.cache.get(attempt.known) is None:
            limits += [_Limit(f"login:account:{account}", self.s.login_max_failures_per_account, self._slow),
                       _Limit(f"login:ip:{ip}", self.s.login_max_failures_per_ip, self._slow)]
        waits = []
        for limit in limits:
            count, _ = await self.cache.incr(limit.key, self.s.login_failure_window_seconds)
            attempt.counters.append(limit.key)
            if count < limit.free:
                continue
            gate = f"{limit.key}:gate"
            taken, wait = await self.cache.incr(gate, limit.delay(count - limit.free))
            if taken == 1:
                attempt.gates.append(gate)
            else:
                waits.append(wait)
        if waits:
            await self._give_back(attempt)
            raise errors.resource_exhausted("too many failed sign-in attempts; try again later",
                                            reason, max(waits))
        return attempt

    async def succeeded(self, attempt: Attempt) -> None:
        """The owner is in: the slots go back, and their address starts afresh and is remembered."""
        await self._give_back(attempt)
        await self.cache.delete(attempt.pair)
        await self.cache.delete(f"{attempt.pair}:gate")
        await self.cache.set(attempt.known, b"1", ttl_seconds=self.s.login_known_address_seconds)

    async def _give_back(self, attempt: Attempt) -> None:
        for key in attempt.counters:
            await self.cache.decr(key)
        for gate in attempt.gates:
            await self.cache.delete(gate)

    def _backoff(self, past: int) -> float:
        # The exponent is bounded so that a long window cannot overflow the float.
        return min(self.s.login_backoff_base_seconds * 2 ** min(past, 32), self.s.login_backoff_max_seconds)

    def _slow(self, past: int) -> float:
        return self.s.login_slow_interval_seconds
