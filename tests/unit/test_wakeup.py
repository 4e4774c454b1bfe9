"""The polling loops' doorbell (outbox relay, notification dispatcher, payment worker)."""
from __future__ import annotations

import asyncio

from mesh.events.outbox import relay_forever
from mesh.wakeup import Wakeup


async def test_a_loop_rung_in_the_turn_it_is_cancelled_still_stops():
    # Shutdown cancels a relay while a commit rings it; asyncio.wait_for on 3.11 lost such a cancel,
    # the loop went on waiting and the platform's stop hung (a CI run timed out in a teardown).
    wakeup = Wakeup()

    async def poll_forever() -> None:
        while True:
            await wakeup.wait(30)

    task = asyncio.create_task(poll_forever())
    await asyncio.sleep(0)  # the loop is now waiting for the ring
    wakeup.ring()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=10)
    assert done and task.cancelled()


async def test_a_ring_ends_the_wait_and_is_used_up():
    wakeup = Wakeup()
    wakeup.ring()
    await asyncio.wait_for(wakeup.wait(30), 10)  # rung before: returns at once
    waiting = asyncio.create_task(wakeup.wait(30))
    await asyncio.sleep(0)
    assert not waiting.done()  # the ring was used up by the first wait
    wakeup.ring()
    await asyncio.wait_for(waiting, 10)


async def test_rings_from_before_a_relays_pass_are_answered_by_that_pass():
    wakeup = Wakeup()
    passes = 0
    waiting = asyncio.Event()

    async def drain_once() -> int:
        nonlocal passes
        passes += 1
        return 0

    def poll() -> float:
        waiting.set()  # about to wait
        return 60

    wakeup.ring()
    wakeup.ring()  # a commit's in-process ring and its notice (OutboxNotices)
    relay = asyncio.create_task(relay_forever(drain_once, wakeup, poll, "test relay"))
    try:
        await waiting.wait()
        assert passes == 1
        waiting.clear()
        wakeup.ring()  # a ring while it waits: one more pass
        await waiting.wait()
        assert passes == 2
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
