"""The dispatcher: makes the provider calls the deliveries table holds, one replica per row at a
time. A failure is retried after base * 2^(attempts-1) seconds (capped, with jitter); after the last
attempt, or when the provider refused it for good, the row is DEAD: the dead letters, kept with
their error for operators (petplatform_notification_dead_letters_total counts them).

Nothing is sent twice for one event: the delivery consumer makes the rows once per event (its
inbox), and a row is marked SENT in the transaction right after its call. A crash between the call
and that commit is the one window in which a call repeats; the row id travels as the provider's
idempotency key so a provider that honours one drops the repeat."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
from collections.abc import Callable

import sqlalchemy as sa
from prometheus_client import Counter

from mesh.sql import Database, utcnow
from mesh.wakeup import Wakeup
from petplatform.notification.v1 import notification_pb2 as pb
from services.notification.channels import DeliveryRejected, Push, PushProvider, SmsProvider, TokenGone
from services.notification.domain import device_id
from services.notification.store import DEAD, SENT, deliveries, devices, due

log = logging.getLogger(__name__)
BATCH = 32
LEASE = dt.timedelta(minutes=2)  # a claimed row is due again after this if its replica died mid-call
DEAD_LETTERS = Counter("petplatform_notification_dead_letters", "Deliveries given up on", ["channel"])
SENT_TOTAL = Counter("petplatform_notification_deliveries", "Deliveries made", ["channel"])


class Dispatcher:
    def __init__(self, db: Database, *, push: PushProvider, sms: SmsProvider, base_seconds: float,
                 max_seconds: float, max_attempts: int, poll_seconds: float,
                 clock: Callable[[], dt.datetime] = utcnow):
        self.db = db
        self.push = push
        self.sms = sms
        self._base = base_seconds
        self._max = max_seconds
        self._attempts = max_attempts
        self._poll = poll_seconds
        self._clock = clock
        self._wake = Wakeup()
        self._task: asyncio.Task | None = None

    def wake(self) -> None:
        self._wake.ring()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notification:dispatcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                made = await self.run_once()
            except Exception:
                log.exception("notification dispatcher pass failed")
                made = 0
            if made < BATCH:
                await self._wake.wait(self._poll)

    async def run_once(self) -> int:
        """Claims the due rows, calls their providers, records each outcome; returns how many."""
        now = self._clock()
        async with self.db.transaction() as s:
            rows = (await s.execute(due(now, BATCH))).all()
            if rows:
                await s.execute(deliveries.update().where(deliveries.c.id.in_([r.id for r in rows]))
                                .values(next_attempt_time=now + LEASE))
        for row in rows:
            await self._deliver(row)
        return len(rows)

    async def _deliver(self, row: sa.Row) -> None:
        attempts = row.attempts + 1
        try:
            if row.channel == pb.CHANNEL_PUSH:
                await self.push.push(Push(token=row.address, title=row.title, body=row.body,
                                          data={"target": row.target, "notification": row.notification},
                                          key=row.id, platform=row.platform))
            else:
                await self.sms.sms(to=row.address, text=f"{row.title}: {row.body}", key=row.id)
        except DeliveryRejected as e:
            await self._dead(row, attempts, str(e), forget_device=isinstance(e, TokenGone))
            return
        except Exception as e:
            if attempts >= self._attempts:
                await self._dead(row, attempts, f"{type(e).__name__}: {e}")
                return
            delay = min(self._max, self._base * 2 ** (attempts - 1)) * random.uniform(0.8, 1.0)
            log.warning("delivery %s failed (attempt %d), retried in %.1fs: %s", row.id, attempts, delay, e)
            async with self.db.transaction() as s:
                await s.execute(deliveries.update().where(deliveries.c.id == row.id).values(
                    attempts=attempts, last_error=f"{type(e).__name__}: {e}"[:1000],
                    next_attempt_time=self._clock() + dt.timedelta(seconds=delay)))
            return
        async with self.db.transaction() as s:
            await s.execute(deliveries.update().where(deliveries.c.id == row.id).values(
                state=SENT, attempts=attempts, send_time=self._clock()))
        SENT_TOTAL.labels(pb.Channel.Name(row.channel)).inc()

    async def _dead(self, row: sa.Row, attempts: int, error: str, *, forget_device: bool = False) -> None:
        log.error("delivery %s dead-lettered after %d attempt(s): %s", row.id, attempts, error)
        DEAD_LETTERS.labels(pb.Channel.Name(row.channel)).inc()
        async with self.db.transaction() as s:
            await s.execute(deliveries.update().where(deliveries.c.id == row.id).values(
                state=DEAD, attempts=attempts, last_error=error[:1000]))
            if forget_device:
                await s.execute(devices.delete().where(devices.c.id == device_id(row.address)))
