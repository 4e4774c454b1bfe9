"""The sign-in throttle's schedule, on the in-process cache with a clock the test moves.
(The e2e tests drive it through Login, in parallel, on memory and on Redis.)"""
from __future__ import annotations

import math

import pytest

from mesh import errors
from mesh.cache import MemoryCache
from mesh.config import load_settings
from services.auth.throttle import LoginThrottle
from tests.support.clock import FakeClock

EMAIL = "owner@example.com"


@pytest.fixture
def clock():
    return FakeClock()


def throttle(clock, **settings) -> LoginThrottle:
    return LoginThrottle(MemoryCache(clock), load_settings(**settings))


async def fail(t: LoginThrottle, ip: str, email: str = EMAIL) -> None:
    await t.admit(email, ip)  # the password was wrong: the attempt keeps its slots


async def refused_wait(t: LoginThrottle, ip: str, email: str = EMAIL) -> float:
    with pytest.raises(errors.ApiError) as e:
        await t.admit(email, ip)
    assert e.value.reason == "LOGIN_THROTTLED"
    return e.value.details[0].retry_delay.seconds


async def test_back_off_doubles_after_the_free_failures_up_to_the_cap(clock):
    t = throttle(clock, login_backoff_after_failures=3, login_backoff_base_seconds=2, login_backoff_max_seconds=20)
    for _ in range(3):
        await fail(t, "a")
    told = []
    for _ in range(5):
        wait = await refused_wait(t, "a")
        told.append(wait)
        clock.now += wait  # waiting as told is enough
        await fail(t, "a")
    assert told == [2, 4, 8, 16, 20]


async def test_asking_early_does_not_lengthen_the_wait(clock):
    t = throttle(clock, login_backoff_after_failures=1, login_backoff_base_seconds=10)
    await fail(t, "a")
    for elapsed in range(1, 9):
        clock.now += 1
        assert await refused_wait(t, "a") == 10 - elapsed
    clock.now += 2
    await fail(t, "a")
    assert await refused_wait(t, "a") == 20  # the second back-off, not one inflated by the refusals


async def test_other_addresses_and_accounts_are_not_held_back(clock):
    t = throttle(clock)
    for _ in range(5):
        await fail(t, "attacker")
    await refused_wait(t, "attacker")
    await t.succeeded(await t.admit(EMAIL, "owner"))
    await fail(t, "attacker", "someone-else@example.com")


async def test_success_resets_the_address_and_gives_the_slots_back(clock):
    t = throttle(clock, login_max_failures_per_account=6)
    for _ in range(3):
        for _ in range(4):
            await fail(t, "owner")
        await t.succeeded(await t.admit(EMAIL, "owner"))  # 5th attempt: not refused for its own slot
    for ip in ("new-1", "new-2"):
        await t.succeeded(await t.admit(EMAIL, ip))
    # Of all that, only the first four failures count on the account: later ones came from an address
    # known by then, and successes gave their slots back.
    await fail(t, "stranger-1")
    await fail(t, "stranger-2")  # the 6th: let through, and strangers now wait
    assert await refused_wait(t, "stranger-3") == 60


async def test_past_the_account_ceiling_strangers_are_slowed_not_locked(clock):
    t = throttle(clock, login_max_failures_per_account=4, login_slow_interval_seconds=30)
    await t.succeeded(await t.admit(EMAIL, "home"))
    for i in range(4):
        await fail(t, f"bot-{i}")
    assert await refused_wait(t, "bot-new") == 30
    assert await refused_wait(t, "laptop") == 30  # the owner on a new device waits too...
    await t.succeeded(await t.admit(EMAIL, "home"))  # ...but not from an address they signed in from
    clock.now += 30
    await fail(t, "bot-new")  # one attempt per interval still goes through
    assert await refused_wait(t, "bot-other") == 30


async def test_past_the_address_ceiling_its_known_people_still_get_in(clock):
    t = throttle(clock, login_max_failures_per_ip=3, login_slow_interval_seconds=45)
    await t.succeeded(await t.admit(EMAIL, "nat"))
    for i in range(3):
        await fail(t, "nat", f"guess-{i}@example.com")
    assert await refused_wait(t, "nat", "guess-new@example.com") == 45
    await t.succeeded(await t.admit(EMAIL, "nat"))
    await fail(t, "elsewhere", "guess-new@example.com")


async def test_the_wait_told_is_the_longest_of_the_limits_and_nothing_is_kept(clock):
    t = throttle(clock, login_backoff_after_failures=1, login_backoff_base_seconds=5,
                 login_max_failures_per_account=2, login_slow_interval_seconds=40)
    await fail(t, "a")  # closes the back-off of (account, a) for 5 s
    await fail(t, "b")  # the account's 2nd failure: strangers now get one attempt per 40 s
    assert await refused_wait(t, "a") == 40  # not 5: the account's gate is the one that opens last
    clock.now += 40
    await fail(t, "a")  # the refused attempt took nothing: both gates open now
    assert await refused_wait(t, "a") == 40


async def test_the_wait_is_the_remaining_time_rounded_up(clock):
    t = throttle(clock, login_backoff_after_failures=1, login_backoff_base_seconds=3)
    await fail(t, "a")
    clock.now += 1.5
    assert await refused_wait(t, "a") == math.ceil(1.5)
