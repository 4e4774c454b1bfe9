"""One suite for every events adapter: the in-process and RabbitMQ buses, SQLite and PostgreSQL outboxes."""
from __future__ import annotations

import asyncio
import gc
import datetime as dt
import uuid

from prometheus_client import REGISTRY
import pytest
import sqlalchemy as sa

from mesh.events import (InProcessBus, Outside, OutboxNotices, Relay, UndeclaredEvent, emit, event_type, inbox_handler,
                         migrate_event_tables, producer, subscribe)
from mesh.events.bus import MAX_DELIVERIES
from mesh.events.outbox import inbox, notice_channel, outbox, seal
from petplatform.auth.v1 import events_pb2 as auth_events
from petplatform.common.v1 import event_pb2
from tests.support.databases import drop_database, scratch_database
from tests.support.events import applied, applied_counts, drop_bus, make_bus, make_db


@pytest.fixture(params=["inprocess", "rabbit"])
async def bus(request):
    b = await make_bus(request.param)
    yield b
    await drop_bus(b)


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request, tmp_path):
    d = await make_db(request.param, tmp_path)
    yield d
    await drop_database(d)


async def eventually(check, timeout: float = 10.0):
    for _ in range(int(timeout / 0.02)):
        if result := await check():
            return result
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def dead_lettered(consumer: str) -> float:
    return REGISTRY.get_sample_value("petplatform_events_dead_lettered_total", {"consumer": consumer}) or 0.0


def email(to: str) -> event_pb2.EmailRequested:
    return event_pb2.EmailRequested(to=to, subject="hi", text_body="hello")


async def test_publish_routes_by_type_to_every_consumer(bus):
    got: dict[str, list[bytes]] = {"a": [], "b": []}
    for name in got:
        async def handler(body, name=name):
            got[name].append(body)
        await bus.subscribe(f"c.{name}", ["pet.created"] if name == "a" else ["pet.created", "user.created"], handler)
    await bus.publish("pet.created", b"p1", "1")
    await bus.publish("user.created", b"u1", "2")
    await bus.publish("match.created", b"nobody", "3")
    await eventually(lambda: asyncio.sleep(0, len(got["a"]) == 1 and len(got["b"]) == 2))
    await asyncio.sleep(0.1)
    assert got == {"a": [b"p1"], "b": [b"p1", b"u1"]}


async def test_a_failing_handler_is_retried_then_dead_lettered(bus):
    attempts = []

    async def broken(body):
        attempts.append(body)
        raise RuntimeError("cannot handle")

    parked = dead_lettered("c.broken")
    await bus.subscribe("c.broken", ["x.happened"], broken)
    await bus.publish("x.happened", b"poison", "1")
    assert await eventually(lambda: bus.dead_letters("c.broken")) == [b"poison"]
    # RabbitMQ's delivery limit counts redeliveries, so it may make one more attempt than the in-process bus.
    assert MAX_DELIVERIES <= len(attempts) <= MAX_DELIVERIES + 1
    assert await bus.dead_letters("c.broken") == [b"poison"], "looking at dead letters does not consume them"
    assert dead_lettered("c.broken") == parked + 1, "the metric operators alert on counts it once"


async def test_a_transient_failure_is_retried_not_dead_lettered(bus):
    attempts = []

    async def flaky(body):
        attempts.append(body)
        if len(attempts) == 1:
            raise RuntimeError("database blip")

    parked = dead_lettered("c.flaky")
    await bus.subscribe("c.flaky", ["x.happened"], flaky)
    await bus.publish("x.happened", b"once", "1")
    await eventually(lambda: asyncio.sleep(0, len(attempts) == 2))
    await asyncio.sleep(0.2)
    assert attempts == [b"once", b"once"] and await bus.dead_letters("c.flaky") == []
    assert dead_lettered("c.flaky") == parked


async def test_outbox_publishes_committed_events_only(db, bus):
    got = []

    async def collect(body):
        got.append(event_pb2.EventEnvelope.FromString(body))

    await bus.subscribe("c.mail", ["email.send"], collect)
    with pytest.raises(RuntimeError):
        async with db.transaction() as s:
            await emit(s, email("rolled@back"))
            raise RuntimeError("the state change failed")
    async with db.transaction() as s:
        event_id = await emit(s, email("kept@ok"))
    relay = Relay(db, bus, poll_seconds=30)  # a long poll: delivery below proves the commit woke it
    relay.start()
    try:
        relay.wake()  # the commit above happened before the relay existed
        await eventually(lambda: asyncio.sleep(0, len(got) == 1))
        async with db.transaction() as s:
            await emit(s, email("second@ok"))
        await eventually(lambda: asyncio.sleep(0, len(got) == 2), timeout=30)

        async def both_marked() -> bool:
            # A consumer may hold an event before the relay has marked its row (it marks once confirmed).
            async with db.transaction() as s:
                rows = (await s.execute(sa.select(outbox.c.publish_time))).scalars().all()
            return len(rows) == 2 and all(rows)
        await eventually(both_marked, timeout=30)
    finally:
        await relay.stop()
    payload = event_pb2.EmailRequested()
    assert got[0].id == event_id and got[0].payload.Unpack(payload) and payload.to == "kept@ok"


async def test_a_relay_with_nothing_to_publish_does_not_queue_behind_a_writer(db, bus):
    """On SQLite every writer of a service takes turns; a relay's poll that finds nothing pending takes no
    turn (each poll queued with the writers: under load, a queue of sign-ups waited behind them)."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold_the_turn() -> None:
        async with db.transaction():
            entered.set()
            await release.wait()

    holder = asyncio.create_task(hold_the_turn())
    await entered.wait()
    try:
        async with asyncio.timeout(10):
            assert await Relay(db, bus).drain_once() == 0
    finally:
        release.set()
        await holder


async def test_inbox_applies_a_replayed_event_once(db, bus):
    async def effect(s, event: auth_events.UserCreated):
        await s.execute(applied.insert().values(event_id=event.user))

    await subscribe(bus, db, "c.users", {auth_events.UserCreated: effect})
    async with db.transaction() as s:
        event_id = await emit(s, auth_events.UserCreated(user="users/u1"))
        body = (await s.execute(sa.select(outbox.c.body))).scalar_one()
    for _ in range(3):
        await bus.publish("user.created", body, event_id)
    await eventually(lambda: applied_counts(db))
    await asyncio.sleep(0.2)
    assert await applied_counts(db) == {"users/u1": 1}


async def envelopes(db, *users: str) -> list[bytes]:
    """UserCreated envelopes, as the outbox stores them (left unpublished: no relay runs)."""
    async with db.transaction() as s:
        for u in users:
            await emit(s, auth_events.UserCreated(user=u))
        return list((await s.execute(sa.select(outbox.c.body).order_by(outbox.c.id))).scalars())


async def test_events_arriving_together_are_applied_in_one_transaction_each_once(db):
    sessions = []

    async def effect(s, event: auth_events.UserCreated):
        sessions.append(s)
        await s.execute(applied.insert().values(event_id=event.user))

    handle = inbox_handler(db, "c.group", {auth_events.UserCreated: effect})
    bodies = await envelopes(db, "users/a", "users/b", "users/c")
    # As the broker hands over a prefetch: all at once, one of them twice (a redelivery).
    await asyncio.gather(*(handle(b) for b in [*bodies, bodies[1]]))
    assert await applied_counts(db) == {"users/a": 1, "users/b": 1, "users/c": 1}
    if db.is_sqlite:  # one writer for the service: a transaction per event, so a group never holds it long
        assert len({id(s) for s in sessions}) == 3
    else:
        assert len({id(s) for s in sessions[1:]}) == 1, "those queued behind the first are applied together"


async def test_events_are_applied_in_arrival_order_outside_effects_included(db):
    """An effect on the outside world (Outside) waits its turn behind the events that arrived before it."""
    order = []

    async def effect(s, event: auth_events.UserCreated):
        await asyncio.sleep(0.01)  # a slow transaction: the Outside event behind it must still wait
        order.append(event.user)

    async def mail(event: auth_events.UserEmailVerified):
        order.append(event.user)

    handle = inbox_handler(db, "c.order", {auth_events.UserCreated: effect,
                                           auth_events.UserEmailVerified: Outside(mail)})
    async with db.transaction() as s:
        await emit(s, auth_events.UserCreated(user="users/a"))
        await emit(s, auth_events.UserEmailVerified(user="users/b"))
        await emit(s, auth_events.UserCreated(user="users/c"))
        bodies = list((await s.execute(sa.select(outbox.c.body).order_by(outbox.c.id))).scalars())
    await asyncio.gather(*(handle(b) for b in bodies))
    assert order == ["users/a", "users/b", "users/c"]


async def test_a_failing_event_fails_alone_and_the_rest_of_its_group_is_applied(db):
    async def effect(s, event: auth_events.UserCreated):
        await s.execute(applied.insert().values(event_id=event.user))
        if event.user == "users/bad":
            raise RuntimeError("this one cannot be applied yet")

    handle = inbox_handler(db, "c.group-failure", {auth_events.UserCreated: effect})
    bodies = await envelopes(db, "users/a", "users/b", "users/bad", "users/c")
    results = await asyncio.gather(*(handle(b) for b in bodies), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["NoneType", "NoneType", "RuntimeError", "NoneType"]
    assert await applied_counts(db) == {"users/a": 1, "users/b": 1, "users/c": 1}
    await handle(bodies[0])  # processed already: not again
    assert await applied_counts(db) == {"users/a": 1, "users/b": 1, "users/c": 1}


async def test_a_handler_gone_before_its_event_failed_leaves_no_unread_error(db):
    """A delivery cancelled while its event waits (the consumer stopping): the group still settles the event, and
    its failure is nobody's to read, rather than an asyncio 'exception was never retrieved' error in the logs."""
    started, release = asyncio.Event(), asyncio.Event()

    async def effect(s, event: auth_events.UserCreated):
        started.set()
        await release.wait()
        raise RuntimeError("cannot be applied now")

    handle = inbox_handler(db, "c.gone", {auth_events.UserCreated: effect})
    (body,) = await envelopes(db, "users/a")
    delivery = asyncio.create_task(handle(body))
    await started.wait()
    delivery.cancel()
    unread = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unread.append(context))
    try:
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await delivery  # once its event's transaction has ended
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert unread == []


async def test_a_payload_of_the_wrong_type_is_dead_lettered(db, bus):
    async def effect(s, event: auth_events.UserCreated):
        await s.execute(applied.insert().values(event_id=event.user))

    handle = inbox_handler(db, "c.strict", {auth_events.UserCreated: effect})
    attempts = []

    async def counted(body: bytes) -> None:
        attempts.append(body)
        await handle(body)

    parked = dead_lettered("c.strict")
    await bus.subscribe("c.strict", ["user.created"], counted)
    async with db.transaction() as s:
        event_id = await emit(s, email("not-a-user@x"))
        body = (await s.execute(sa.select(outbox.c.body))).scalar_one()
    await bus.publish("user.created", body, event_id)  # an email.send envelope routed as user.created
    assert await eventually(lambda: bus.dead_letters("c.strict")) == [body]
    assert attempts == [body], "a poison is parked at once, not retried"
    assert dead_lettered("c.strict") == parked + 1
    assert await applied_counts(db) == {}


async def test_broadcast_reaches_every_replica_and_a_failure_drops_only_that_event(bus):
    got: dict[str, list[bytes]] = {"replica1": [], "replica2": []}
    for name in got:
        async def handler(body, name=name):
            if body == b"poison" and name == "replica1":
                raise ValueError("cannot handle")
            got[name].append(body)
        await bus.subscribe_broadcast(["pet.updated"], handler)
    for body in (b"one", b"poison", b"two"):
        await bus.publish("pet.updated", body, body.decode())
    await eventually(lambda: asyncio.sleep(0, len(got["replica2"]) == 3))
    await asyncio.sleep(0.1)
    assert got == {"replica1": [b"one", b"two"], "replica2": [b"one", b"poison", b"two"]}, \
        "each replica hears every event once; a failing handler is not retried"


async def test_purge_drops_only_what_is_older_than_the_retention(db, bus):
    from mesh.events.outbox import inbox
    from mesh.sql import utcnow
    old = utcnow() - dt.timedelta(days=8)
    async with db.transaction() as s:
        ids = {}
        for label in ("old_sent", "new_sent", "old_pending"):
            ids[label] = await emit(s, email(f"{label}@x"))
        await s.execute(outbox.update().where(outbox.c.event_id == ids["old_sent"]).values(create_time=old,
                                                                                          publish_time=old))
        await s.execute(outbox.update().where(outbox.c.event_id == ids["new_sent"]).values(publish_time=utcnow()))
        await s.execute(outbox.update().where(outbox.c.event_id == ids["old_pending"]).values(create_time=old))
        await s.execute(inbox.insert().values([{"consumer": "c", "event_id": "old", "process_time": old},
                                               {"consumer": "c", "event_id": "new", "process_time": utcnow()}]))
    assert await Relay(db, bus, retention=dt.timedelta(days=7)).purge_once(batch=1) == (1, 1)
    async with db.transaction() as s:
        left = set((await s.execute(sa.select(outbox.c.event_id))).scalars())
        seen = set((await s.execute(sa.select(inbox.c.event_id))).scalars())
    assert left == {ids["new_sent"], ids["old_pending"]}, "an unpublished event is never purged, however old"
    assert seen == {"new"}


def test_the_routing_key_comes_from_the_contract():
    assert event_type(auth_events.UserCreated) == "user.created"
    assert event_type(event_pb2.EmailRequested(to="x")) == "email.send"
    with pytest.raises(TypeError, match="not an event"):
        event_type(event_pb2.EventEnvelope)


async def test_a_service_emits_only_what_its_registry_entry_declares(tmp_path):
    from mesh.events import producer
    from mesh.sql import Database
    db = await make_db("sqlite", tmp_path, info=producer("auth", frozenset({"user.created"})))
    try:
        async with db.transaction() as s:
            await emit(s, auth_events.UserCreated(user="users/u1"))
            with pytest.raises(UndeclaredEvent, match="email.send"):
                await emit(s, email("x@y"))
        bare = Database(db.url, None)  # no producer: no event can be attributed to a source
        with pytest.raises(UndeclaredEvent):
            async with bare.transaction() as s:
                await emit(s, email("x@y"))
        await bare.dispose()
    finally:
        await drop_database(db)


async def test_an_outside_effect_runs_with_no_transaction_open_and_once(db, bus):
    # An email sent inside the inbox transaction held SQLite's one writer while the mail server answered:
    # every other write of the service queued behind it.
    sent = []

    async def send(event: auth_events.UserCreated) -> None:
        async with asyncio.timeout(10):  # inside a writing transaction on SQLite this would wait for ever
            async with db.transaction() as s:
                await s.execute(applied.insert().values(event_id=f"{event.user}#{len(sent)}"))
        sent.append(event.user)
        if len(sent) == 1:
            raise ConnectionError("the mail server hung up")  # not recorded: delivered again

    await subscribe(bus, db, "c.outside", {auth_events.UserCreated: Outside(send)})
    async with db.transaction() as s:
        event_id = await emit(s, auth_events.UserCreated(user="users/u9"))
        body = (await s.execute(sa.select(outbox.c.body))).scalar_one()
    await bus.publish("user.created", body, event_id)
    await eventually(lambda: asyncio.sleep(0, len(sent) == 2), timeout=30)  # failed once, then done

    async def recorded() -> bool:
        async with db.transaction() as s:
            return bool(await s.scalar(sa.select(sa.func.count()).select_from(inbox).where(
                inbox.c.consumer == "c.outside", inbox.c.event_id == event_id)))
    await eventually(recorded, timeout=30)
    await bus.publish("user.created", body, event_id)  # a replay after it was recorded
    async with db.transaction() as s:  # ... is dropped: a marker published after it arrives after it
        marker_id = await emit(s, auth_events.UserCreated(user="users/marker"))
        marker = (await s.execute(sa.select(outbox.c.body).where(outbox.c.event_id == marker_id))).scalar_one()
    await bus.publish("user.created", marker, marker_id)
    await eventually(lambda: asyncio.sleep(0, "users/marker" in sent), timeout=30)
    assert sent == ["users/u9", "users/u9", "users/marker"]


async def test_a_commit_wakes_only_the_relay_of_its_own_database(tmp_path):
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    dbs = [await make_db("sqlite", tmp_path / name, info=producer(f"{name}{uuid.uuid4().hex[:8]}", None))
           for name in ("one", "two")]
    bus = await make_bus("inprocess")
    drains = {0: 0, 1: 0}

    class Counted(Relay):
        def __init__(self, i: int):
            super().__init__(dbs[i], bus, poll_seconds=30)
            self.i = i

        async def drain_once(self) -> int:
            drains[self.i] += 1
            return await super().drain_once()

    relays = [Counted(0), Counted(1)]
    for r in relays:
        r.start()
    try:
        await eventually(lambda: asyncio.sleep(0, drains == {0: 1, 1: 1}))  # each looked once on starting
        async with dbs[0].transaction() as s:
            await emit(s, email("one@ok"))
        await eventually(lambda: asyncio.sleep(0, drains[0] >= 3))  # published (1), then found none (2)
        assert drains[1] == 1, "the other database's relay was not woken"
    finally:
        for r in relays:
            await r.stop()
        await drop_bus(bus)
        for d in dbs:
            await drop_database(d)


async def test_another_replicas_commit_wakes_a_listening_relay_even_after_its_connection_drops(tmp_path):
    """On PostgreSQL the outbox's trigger notifies on commit: a relay whose OutboxNotices listens hears the
    commits of other replicas (here a plain connection, which no commit hook of this process sees) at once,
    though it polls only every minute; and again once a lost listening connection is back."""
    db = scratch_database("postgres", tmp_path, info=producer("test", None))
    await migrate_event_tables(db)  # the trigger comes with the events migrations
    bus = await make_bus("inprocess")
    got = []

    async def collect(body):
        got.append(body)
    await bus.subscribe("c.mail", ["email.send"], collect)
    relay = Relay(db, bus, poll_seconds=60)
    notices = OutboxNotices([relay])

    async def another_replica_emits(to: str) -> None:
        envelope = seal(email(to), source="test", declared=None)
        async with db.engine.begin() as conn:
            await conn.execute(outbox.insert().values(
                event_id=envelope.id, event_type=envelope.type, body=envelope.SerializeToString(),
                create_time=envelope.time.ToDatetime(tzinfo=dt.timezone.utc)))

    relay.start()
    notices.start()
    try:
        await eventually(lambda: asyncio.sleep(0, relay.notified))
        await another_replica_emits("first@ok")
        await eventually(lambda: asyncio.sleep(0, len(got) == 1))
        async with db.engine.begin() as conn:  # the listening connection dies (a database restart, a proxy)
            dropped = await conn.scalar(sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE :listen"),
                {"listen": f"LISTEN%{notice_channel(str(db.schema))}%"})
        assert dropped == 1
        await eventually(lambda: asyncio.sleep(0, not relay.notified))
        await eventually(lambda: asyncio.sleep(0, relay.notified))  # listening again
        await another_replica_emits("second@ok")
        await eventually(lambda: asyncio.sleep(0, len(got) == 2))
    finally:
        await notices.stop()
        await relay.stop()
        await drop_bus(bus)
        await drop_database(db)


class _Outage:
    """A bus whose publishing fails while `down`: the broker unreachable."""

    def __init__(self, bus):
        self.bus = bus
        self.down = True

    async def publish(self, event_type: str, body: bytes, message_id: str) -> None:
        if self.down:
            raise ConnectionError("broker unreachable")
        await self.bus.publish(event_type, body, message_id)


async def test_the_outbox_lag_grows_while_events_cannot_be_published_then_returns_to_zero(tmp_path):
    source = f"lag{uuid.uuid4().hex[:8]}"
    db = await make_db("sqlite", tmp_path, info=producer(source, None))
    inner = await make_bus("inprocess")
    got = []

    async def collect(body):
        got.append(body)
    await inner.subscribe("c.lag", ["email.send"], collect)
    bus = _Outage(inner)
    relay = Relay(db, bus, poll_seconds=0.05)  # type: ignore[arg-type]

    def lag() -> float:
        return REGISTRY.get_sample_value("petplatform_outbox_lag_seconds", {"service": source})

    relay.start()
    try:
        await eventually(lambda: asyncio.sleep(0, lag() == 0))  # nothing pending: no lag
        async with db.transaction() as s:
            await emit(s, email("waits@ok"))
        first = await eventually(lambda: asyncio.sleep(0, lag()))
        await eventually(lambda: asyncio.sleep(0, lag() > first), timeout=15)  # still stuck, and older
        assert got == []
        bus.down = False
        await eventually(lambda: asyncio.sleep(0, len(got) == 1), timeout=15)
        await eventually(lambda: asyncio.sleep(0, lag() == 0), timeout=15)
    finally:
        await relay.stop()
        await drop_bus(inner)
        await drop_database(db)


async def test_the_connection_pool_is_measured_per_service(tmp_path):
    db = await make_db("postgres", tmp_path, info=producer(f"pool{uuid.uuid4().hex[:8]}", None))

    def sample(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"service": db.service, **labels})

    try:
        async with db.transaction() as s:
            await s.execute(sa.text("SELECT 1"))
            assert sample("petplatform_db_pool_connections", state="in_use") == 1
        assert sample("petplatform_db_pool_connections", state="in_use") == 0
        assert sample("petplatform_db_pool_connections", state="idle") == 1
        assert sample("petplatform_db_pool_max_connections") == 20  # pool_size 10 + max_overflow 10
    finally:
        await drop_database(db)


async def test_a_cancelled_delivery_returns_once_its_event_is_applied_and_the_writer_has_stopped(db):
    """The bus closing cancels its deliveries, then the database closes: no inbox writer may be left running."""
    started, release = asyncio.Event(), asyncio.Event()

    async def effect(s, event: auth_events.UserCreated):
        started.set()
        await release.wait()
        await s.execute(applied.insert().values(event_id=event.user))

    handle = inbox_handler(db, "c.closing", {auth_events.UserCreated: effect})
    (body,) = await envelopes(db, "users/a")
    delivery = asyncio.create_task(handle(body))
    await started.wait()
    delivery.cancel()
    await asyncio.sleep(0)  # the cancellation is delivered
    waited = not delivery.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await delivery
    assert waited, "the delivery waits for its event's transaction"
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "inbox:c.closing"]
    assert await applied_counts(db) == {"users/a": 1}


async def test_closing_the_in_process_bus_waits_for_every_delivery():
    """Not only for the first to end: the others would run on into a stopped platform."""
    bus, release, running, ended = InProcessBus(), asyncio.Event(), [], []

    async def handler(body):
        running.append(body)
        try:
            await asyncio.Event().wait()  # until the bus closes
        finally:
            if body == b"slow":
                await release.wait()
            ended.append(body)

    await bus.subscribe("c.close", ["pet.created"], handler, prefetch=2)
    for i, body in enumerate([b"quick", b"slow"]):
        await bus.publish("pet.created", body, str(i))
    await eventually(lambda: asyncio.sleep(0, len(running) == 2))
    closing = asyncio.create_task(bus.close())
    await eventually(lambda: asyncio.sleep(0, ended == [b"quick"]))
    for _ in range(10):  # loop turns enough for a close that would not wait to return
        await asyncio.sleep(0)
    waited = not closing.done()
    release.set()
    await closing
    assert waited and ended == [b"quick", b"slow"]
