"""Who sent a chat message is kept only while the message can be reported (the report window, 90 days
by default): an older message's report is refused with FAILED_PRECONDITION, and once the periodic purge
has forgotten it, with NOT_FOUND and its own reason. Users and pets are kept for good. The admin
service's clock is moved forward; chat stamps its messages with the real time."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import grpc
import sqlalchemy as sa

from services.admin import store
from tests.e2e.admin.test_moderation import _known, case_of
from tests.support.admin import report, report_when_known
from tests.support.chat import open_room, send
from tests.support.errors import error_reason, expect
from tests.support.matching import until
from tests.support.pets import create, dog
from tests.support.platform import Api, module_of

NF, FP = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION


@contextlib.contextmanager
def admin_clock_moved(api: Api, by: dt.timedelta):
    module = module_of(api, "admin")
    base = module.clock
    module.clock = lambda: base() + by
    try:
        yield module
    finally:
        module.clock = base


async def messages_known(api: Api) -> int:
    async with module_of(api, "admin").db.read() as s:
        return len([n for n in await s.scalars(sa.select(store.subjects.c.name)) if n.startswith("rooms/")])


async def window_scenario(api: Api, *, replicas: int) -> None:
    """A message reported inside the window, refused after it, purged by `replicas` purges at once."""
    alice, bob = await api.signup("Alice Chatter"), await api.signup("Bob Chatter")
    reporter, late = await api.signup("Rae Reporter"), await api.signup("Lee Late")
    room = await open_room(api, alice, bob)
    message = await send(api, alice, room, "buy my puppies, wire the money first")
    pet = await create(api, alice, dog("Kept Dog"))
    await report_when_known(api, reporter, message.name)
    await case_of(api, message.name)
    await until(lambda: _known(api, pet.name), what="the pet known to admin")
    window = module_of(api, "admin").report_window
    assert window == dt.timedelta(days=90)

    with admin_clock_moved(api, window - dt.timedelta(hours=1)) as admin:
        assert await admin.purge_subjects_once() == 0  # still reportable: kept
        await report(api, late, message.name)

    with admin_clock_moved(api, window + dt.timedelta(minutes=1)) as admin:
        err = await expect(FP, report(api, bob, message.name), "REPORT_WINDOW_CLOSED")  # not purged yet
        assert "90 days" in (err.details() or "")
        before = await messages_known(api)
        assert before >= 1
        purged = await asyncio.gather(*(admin.purge_subjects_once() for _ in range(replicas)))
        assert sum(purged) == before and await messages_known(api) == 0
        err = await expect(NF, report(api, bob, message.name))
        assert error_reason(err) == "MESSAGE_NOT_REPORTABLE" and "90 days" in (err.details() or "")
        # Pets and accounts are not per-message: kept, and reportable still.
        assert (await report(api, bob, pet.name)).subject == pet.name
        assert (await report(api, bob, alice.name)).subject == alice.name

    # A message sent now is known and reportable as before: the window counts from each message's send.
    fresh = await send(api, bob, room, "a new message")
    await report_when_known(api, alice, fresh.name)


async def test_a_message_is_reportable_for_the_window_then_forgotten(admin_api: Api):
    await window_scenario(admin_api, replicas=1)


async def test_an_unknown_message_is_not_found_with_its_reason(admin_api: Api):
    api = admin_api
    someone = await api.signup("Nobody Special")
    err = await expect(NF, report(api, someone, f"rooms/{'0' * 32}/messages/never-sent"))
    assert error_reason(err) == "MESSAGE_NOT_REPORTABLE"
    # Other kinds keep their plain NOT_FOUND.
    await expect(NF, report(api, someone, f"pets/{'0' * 32}"), "NOT_FOUND")
