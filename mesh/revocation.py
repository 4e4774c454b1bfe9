"""Sessions ended before their access tokens expire: written by the auth service, checked on every
authenticated call (each service's interceptor and the edge).

The cache's key per session is the truth. Each process also keeps the revoked sessions in memory, kept
current by a fan-out message on every revocation, and answers from memory only while that is known to be
complete: listening first, then loaded from the cache's list of current revocations, and not since lost
(the fan-out tells at once). Otherwise each check reads the cache, until listening and loaded again."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from mesh.cache import Cache
from mesh.fanout import Fanout

log = logging.getLogger(__name__)

CHANNEL = "revoked-sessions"
LISTED = "revoked-sessions"  # the cache's set of current revocations, each expiring with its tokens


def revoked_session_key(session_id: str) -> str:
    return f"revoked-session:{session_id}"


class Revocations:
    RELOAD_SECONDS = 0.5  # between attempts to load the list while the cache fails
    SWEEP_EVERY_SECONDS = 60.0  # expired entries are dropped this often (they are never true again anyway)

    def __init__(self, cache: Cache, fanout: Fanout, clock: Callable[[], float] = time.monotonic, *,
                 refresh_seconds: float = 60.0):
        self._cache = cache
        # The list is read again this often: a revocation whose message never went out (its publish failed
        # once it was listed; revoke() raised) reaches a process that stayed connected within this.
        self._refresh_seconds = refresh_seconds
        self._fanout = fanout
        self._clock = clock
        self._expires: dict[str, float] = {}  # session -> when its revocation lapses (its tokens expired)
        self._next_sweep = clock() + self.SWEEP_EVERY_SECONDS
        self._complete = False  # whether memory holds every current revocation
        self._epoch = 0  # bumped on each loss or gap: a load begun before it proves nothing
        self._tasks: set[asyncio.Task] = set()
        self._started = False

    def held(self) -> int:
        """How many revocations this process holds in memory."""
        return len(self._expires)

    def start(self) -> None:
        """Begins listening, then loading, in the background: until then (and if never started) each check
        reads the cache. Once per process, whoever calls it first (the server, or an edge on its own)."""
        if not self._started:
            self._started = True
            self._spawn(self._listen_and_load(self._epoch))
            self._spawn(self._refresh())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def revoke(self, session_id: str, ttl_seconds: float) -> None:
        """Ends a session's access tokens everywhere: for `ttl_seconds`, longer than any of its tokens lives.
        Listed before it is told, so a process that starts listening meanwhile finds it in the list."""
        await self._cache.set(revoked_session_key(session_id), b"1", ttl_seconds=ttl_seconds)
        await self._cache.add_member(LISTED, session_id, ttl_seconds)
        self._remember(session_id, ttl_seconds)  # this process knows at once, before its own message is back
        await self._fanout.publish(CHANNEL, json.dumps([session_id, ttl_seconds]).encode())

    async def is_revoked(self, session_id: str) -> bool:
        if self._complete:
            expires = self._expires.get(session_id)
            return expires is not None and expires > self._clock()
        return await self._cache.get(revoked_session_key(session_id)) is not None

    def _remember(self, session_id: str, ttl_seconds: float) -> None:
        now = self._clock()
        if now >= self._next_sweep:
            self._expires = {s: e for s, e in self._expires.items() if e > now}
            self._next_sweep = now + self.SWEEP_EVERY_SECONDS
        self._expires[session_id] = max(self._expires.get(session_id, now), now + ttl_seconds)

    def _receive(self, data: bytes) -> None:
        session_id, ttl_seconds = json.loads(data)
        self._remember(session_id, ttl_seconds)

    def _on_lost(self) -> None:
        self._epoch += 1
        self._complete = False

    def _on_gap(self) -> None:
        self._on_lost()
        self._spawn(self._load(self._epoch))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name="revocations:load")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _listen_and_load(self, epoch: int) -> None:
        await self._fanout.listen(CHANNEL, self._receive, self._on_gap, self._on_lost)
        await self._load(epoch)

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                listed = await self._cache.members(LISTED)
            except Exception:
                log.warning("reading the revoked sessions again failed; trying at the next refresh", exc_info=True)
                continue
            for session_id, ttl_seconds in listed.items():
                self._remember(session_id, ttl_seconds)

    async def _load(self, epoch: int) -> None:
        """Trusts memory once the list is in, unless the connection was lost meanwhile (a newer load runs)."""
        while epoch == self._epoch:
            try:
                listed = await self._cache.members(LISTED)
            except Exception:
                log.warning("loading the revoked sessions failed; checking each call in the cache meanwhile",
                            exc_info=True)
                await asyncio.sleep(self.RELOAD_SECONDS)
                continue
            for session_id, ttl_seconds in listed.items():
                self._remember(session_id, ttl_seconds)
            if epoch == self._epoch:
                self._complete = True
            return
