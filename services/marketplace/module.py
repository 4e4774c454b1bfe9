"""Marketplace: its servicer, the bookings' moves on payment events, and the expiry of requests
nobody answered."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
import contextlib
import datetime as dt
import logging
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.events import Effects, emit
from mesh.money import from_minor
from mesh.registry import ServiceSpec
from mesh.runtime import Runtime, ServiceModule
from mesh.sql import utcnow
from petplatform.marketplace.v1 import events_pb2 as ev
from petplatform.marketplace.v1 import marketplace_pb2 as m
from petplatform.payment.v1 import events_pb2 as pay_events
from services.marketplace import reviews, store
from services.marketplace.api import MarketplaceServicer, booking_message

log = logging.getLogger(__name__)
B = m.Booking


def booking_id(name: str) -> str:
    return name.removeprefix("bookings/")


CHARGING = (B.PAYMENT_STATUS_PENDING, B.PAYMENT_STATUS_REQUIRES_ACTION)  # a charge under way


async def on_action_required(s: AsyncSession, event: pay_events.PaymentActionRequired) -> None:
    """The owner must authenticate the charge (3-D Secure): the booking says so until the charge ends."""
    row = await store.find_booking(s, booking_id(event.payment.booking), lock=True)
    if row is not None and row.payment_status == B.PAYMENT_STATUS_PENDING:
        await store.update_booking(s, row.id, payment_status=B.PAYMENT_STATUS_REQUIRES_ACTION, update_time=utcnow())


async def on_charged(s: AsyncSession, event: pay_events.PaymentProcessed) -> None:
    row = await store.find_booking(s, booking_id(event.payment.booking), lock=True)
    if row is not None and row.payment_status in CHARGING:
        await store.update_booking(s, row.id, payment_status=B.PAYMENT_STATUS_PAID, update_time=utcnow())


async def on_charge_failed(s: AsyncSession, event: pay_events.PaymentFailed) -> None:
    """A declined card, or a payer who never authenticated in time: the accepted booking is
    cancelled by the platform, its places freed, and booking.cancelled says so (nothing to refund)."""
    row = await store.find_booking(s, booking_id(event.payment.booking), lock=True)
    if row is None or row.payment_status not in CHARGING:
        return
    values: dict = {"payment_status": B.PAYMENT_STATUS_FAILED, "update_time": utcnow()}
    if row.state == B.STATE_ACCEPTED:
        await store.free_places(s, service_id=row.service_id, start=row.start_time, pets=row.pet_count)
        values.update(state=B.STATE_CANCELLED, cancelled_by=B.CANCELLER_PLATFORM)
    await store.update_booking(s, row.id, **values)
    if row.state == B.STATE_ACCEPTED:
        await emit(s, ev.BookingCancelled(booking=booking_message(await store.get_booking(s, row.id)),
                                          refund=from_minor(0, row.currency)))


async def on_refunded(s: AsyncSession, event: pay_events.RefundProcessed) -> None:
    row = await store.find_booking(s, booking_id(event.payment.booking), lock=True)
    if row is None:
        return
    from mesh.money import to_minor
    amount, _ = to_minor(event.payment.amount)
    await store.update_booking(s, row.id, refunded_minor=amount, update_time=utcnow(),
                               payment_status=B.PAYMENT_STATUS_REFUNDED if amount >= row.price_minor
                               else B.PAYMENT_STATUS_PARTIALLY_REFUNDED)


class MarketplaceModule(ServiceModule):
    migrations = Path(__file__).parent / "migrations"

    def __init__(self, rt: Runtime, spec: ServiceSpec):
        super().__init__(rt, spec)
        self.clock: Callable[[], dt.datetime] = utcnow  # tests move it
        self.request_ttl = dt.timedelta(hours=rt.settings.marketplace_request_ttl_hours)
        self._sweeper: asyncio.Task | None = None

    def now(self) -> dt.datetime:
        return self.clock()

    def servicers(self) -> Mapping[str, object]:
        return {"petplatform.marketplace.v1.MarketplaceService": MarketplaceServicer(
            self.db, blobs=self.rt.blobs, pets=lambda: self.rt.channel("pet"), now=self.now,
            request_ttl=self.request_ttl)}

    def consumers(self) -> Mapping[str, Effects]:
        return {"marketplace.payments": {pay_events.PaymentProcessed: on_charged,
                                         pay_events.PaymentFailed: on_charge_failed,
                                         pay_events.PaymentActionRequired: on_action_required,
                                         pay_events.RefundProcessed: on_refunded}}

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="marketplace:expiry")

    async def _sweep(self) -> None:
        while True:
            try:
                await self.expire_once()
                await self.publish_due_reviews()
            except Exception:
                log.exception("expiring requests or publishing reviews failed; trying again")
            await asyncio.sleep(self.rt.settings.marketplace_sweep_seconds)

    async def expire_once(self) -> int:
        """Requests unanswered past their expiry become expired and free their places."""
        async with self.db.read() as s:
            due = await store.due_to_expire(s, state=B.STATE_REQUESTED, now=self.now())
        for booking in due:
            async with self.db.transaction() as s:
                row = await store.find_booking(s, booking, lock=True)
                if row is None or row.state != B.STATE_REQUESTED:
                    continue  # answered meanwhile
                await store.free_places(s, service_id=row.service_id, start=row.start_time, pets=row.pet_count)
                await store.update_booking(s, row.id, state=B.STATE_EXPIRED, update_time=self.now())
                await emit(s, ev.BookingExpired(booking=booking_message(await store.get_booking(s, row.id))))
        return len(due)

    async def publish_due_reviews(self) -> int:
        """Reviews still hidden when their window closes are published: the other side never wrote."""
        async with self.db.read() as s:
            due = await store.hidden_past_deadline(s, now=self.now())
        for booking in due:
            async with self.db.transaction() as s:
                row = await store.find_booking(s, booking, lock=True)
                assert row is not None
                await reviews.publish(s, row, await store.reviews_of(s, row.id), self.now(), booking_message(row))
        return len(due)

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await super().stop()
