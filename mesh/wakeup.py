"""The doorbell of a polling loop: it sleeps until rung or until its poll interval passes."""

from __future__ import annotations

import asyncio
import contextlib


class Wakeup:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ring(self) -> None:
        self._event.set()

    def clear(self) -> None:
        """Forgets the rings so far: the caller is about to look anyway."""
        self._event.clear()

    async def wait(self, seconds: float) -> None:
        """Returns when rung (since the last wait) or after `seconds`.

        asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that arrives in the same
        loop turn as the ring, and a `while True` loop that misses its cancel never stops, hanging shutdown.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()
        self._event.clear()
