"""The fraud service as a module of the mesh: its signals kept from events (one extractor per event source),
each listing and message scored as it arrives (fraud.detected above the review threshold), moderators'
decisions taken as labels, FraudService, and the model trained at start and by the periodic job."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Mapping
from pathlib import Path

from google.protobuf import timestamp_pb2
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.blobs import BlobStore
from mesh.events import Effects, Outside, current_event
from mesh.registry import ServiceSpec
from mesh.runtime import Runtime, ServiceModule
from mesh.sql import utcnow
from ml.fraud import model, photos, signals, store
from ml.fraud.api import FraudServicer
from ml.fraud.engine import Engine
from ml.fraud.logs import make_logs
from petplatform.admin.v1 import events_pb2 as admin_events
from petplatform.auth.v1 import events_pb2 as auth_events
from petplatform.chat.v1 import events_pb2 as chat_events
from petplatform.marketplace.v1 import events_pb2 as marketplace_events
from petplatform.marketplace.v1 import marketplace_pb2
from petplatform.pet.v1 import events_pb2 as pet_events
from petplatform.pet.v1 import pet_pb2

log = logging.getLogger(__name__)
_ID = re.compile(r"^[0-9a-f]{32}$")


def id_of(name: str, collection: str) -> str | None:
    """The id of `collection/{id}`; None for anything else (such an event is skipped, not retried forever)."""
    prefix, _, rest = name.partition("/")
    return rest if prefix == collection and _ID.match(rest) else None


def _time(ts: timestamp_pb2.Timestamp, message: object, field: str) -> dt.datetime:
    return ts.ToDatetime(dt.timezone.utc) if message.HasField(field) else utcnow()  # type: ignore[attr-defined]


def held_on_screening(pet: pet_pb2.Pet) -> bool:
    """A listing created held: the pet service held it before publishing on this service's advice (an owner
    whose account is suspended creates nothing)."""
    return pet.moderation == pet_pb2.Pet.MODERATION_HELD


def event_id() -> str:
    envelope = current_event()
    return envelope.id if envelope else ""


def event_time() -> dt.datetime:
    """When the event being processed happened: a backlog (the service was down, or is new) is judged as of
    then, not as if every account had just signed up."""
    envelope = current_event()
    return envelope.time.ToDatetime(dt.timezone.utc) if envelope and envelope.HasField("time") else utcnow()


class Extractors:
    """One effect per event source, each keeping its signals in the store; listings and messages are scored
    as they arrive. A new source is one more effect here, its table in store.py and its
    facts in features.py."""

    def __init__(self, engine: Engine, blobs: BlobStore):
        self.engine = engine
        self.blobs = blobs

    async def on_user_created(self, s: AsyncSession, event: auth_events.UserCreated) -> None:
        user_id = id_of(event.user, "users")
        if user_id:
            await store.put_account(s, user_id, create_time=event_time())

    async def on_pet_changed(self, event: pet_events.PetCreated | pet_events.PetUpdated) -> None:
        """Run outside the inbox transaction (mesh.events.Outside): new photos are read from the blob store and
        hashed first, with no connection (or SQLite writer's turn) held, then one transaction keeps the
        listing, scores it and emits. At least once: run again after a crash, it changes nothing new (the
        photos are known, the action already emitted) but logs the score once more."""
        pet = event.pet
        pet_id, owner_id = id_of(pet.name, "pets"), id_of(pet.owner, "users")
        if not pet_id or not owner_id:
            log.warning("fraud: skipped %s of %r: not a pet and owner name", type(event).__name__, pet.name)
            return
        known = await self.engine.db.reading(lambda s: store.photo_names(s, pet_id))
        hashes = {}
        for photo in pet.photos:
            if photo.name.startswith(f"pets/{pet_id}/photos/") and photo.name not in known:
                hashes[photo.name] = await photos.phash_of(self.blobs, photo.name)
        async with self.engine.db.transaction() as s:
            await self._keep_listing(s, pet, pet_id, owner_id, hashes, created=isinstance(event, pet_events.PetCreated))

    async def _keep_listing(self, s: AsyncSession, pet: pet_pb2.Pet, pet_id: str, owner_id: str,
                            hashes: dict[str, int | None], *, created: bool) -> None:
        changed = await store.put_listing(
            s, pet_id, owner_id=owner_id, species=int(pet.species), breed=pet.breed,
            text=f"{pet.display_name}\n{pet.description}", create_time=_time(pet.create_time, pet, "create_time"),
            update_time=pet.update_time.ToDatetime(dt.timezone.utc) if pet.HasField("update_time") else None)
        if not changed:
            return
        await self._sync_photos(s, pet, pet_id, owner_id, hashes)
        assessment = await self.engine.assess_listing(s, owner_id=owner_id, pet_id=pet_id, now=event_time())
        if assessment is not None and created and held_on_screening(pet):
            # The pet service held it on our ScoreListing: the case that owns that hold must open, whatever
            # this later score says (services/pet/screening.py).
            assessment = dataclasses.replace(assessment, action="hold")
        if assessment is not None:
            await self.engine.record(s, subject=f"pets/{pet_id}", user_id=owner_id, assessment=assessment,
                                     source_event=event_id())

    async def _sync_photos(self, s: AsyncSession, pet: pet_pb2.Pet, pet_id: str, owner_id: str,
                           hashes: dict[str, int | None]) -> None:
        """The pet's photos as the event lists them: removed ones dropped, new ones (hashed beforehand, None
        when the blob was gone or undecodable) added."""
        known = await store.photo_names(s, pet_id)
        listed = {p.name for p in pet.photos if p.name.startswith(f"pets/{pet_id}/photos/")}
        await store.remove_photos(s, known - listed)
        for photo in pet.photos:
            if photo.name in listed - known:
                h = hashes.get(photo.name)
                if h is not None:
                    await store.add_photo(s, photo.name, pet_id=pet_id, owner_id=owner_id, phash=h,
                                          create_time=_time(photo.create_time, photo, "create_time"))

    async def on_pet_deleted(self, s: AsyncSession, event: pet_events.PetDeleted) -> None:
        pet_id = id_of(event.pet.name, "pets")
        if pet_id:
            await store.delete_listing(s, pet_id)

    async def on_message_sent(self, s: AsyncSession, event: chat_events.MessageSent) -> None:
        m = event.message
        sender_id = id_of(m.sender, "users")
        if not sender_id or not m.name.startswith("rooms/") or len(m.name) > 200:
            return
        await store.put_message(s, m.name, sender_id=sender_id, text=m.text,
                                create_time=_time(m.create_time, m, "create_time"))
        assessment = await self.engine.assess_message(s, sender_id=sender_id, name=m.name,
                                                       flags=signals.flags(m.text), now=event_time())
        await self.engine.record(s, subject=m.name, user_id=sender_id, assessment=assessment,
                                 source_event=event_id())

    async def on_booking_cancelled(self, s: AsyncSession, event: marketplace_events.BookingCancelled) -> None:
        """The owner's cancellations, and their bookings cancelled because the charge failed (the platform
        cancels then): card testing and booking-and-cancelling both show here. payment.failed names no payer,
        so this event is where a failed charge meets its account."""
        owner_id = id_of(event.booking.owner, "users")
        if not owner_id:
            return
        Canceller = marketplace_pb2.Booking.Canceller
        if event.booking.cancelled_by == Canceller.CANCELLER_OWNER:
            await store.put_account(s, owner_id, cancelled_bookings=1)
        elif event.booking.cancelled_by == Canceller.CANCELLER_PLATFORM:
            await store.put_account(s, owner_id, failed_charges=1)

    async def on_moderation(self, s: AsyncSession, event: admin_events.ModerationActionTaken) -> None:
        """A moderator's decision: the label of the subject's features as last scored (before the decision),
        and, upheld against an account, one more upheld report for it. Automatic holds (no actor) are the
        scorer's own output, not a label."""
        user_id = id_of(event.user, "users")
        if not user_id or not event.actor:
            return
        subject = event.subject
        previous = await store.subject(s, subject)
        if previous is None:  # never scored: its features now, before this decision counts in them
            assessment = await self._assess_subject(s, subject, user_id)
            if assessment is None:
                return
            await store.put_subject(s, subject, user_id=user_id, vector=assessment.features,
                                    score=assessment.score, action=None, now=utcnow())
        upheld = event.upheld and not event.reversal
        await store.set_label(s, subject, int(upheld))
        if upheld:
            await store.put_account(s, user_id, reports=1)
        elif event.reversal and previous is not None and previous.label == 1:
            await store.put_account(s, user_id, reports=-1)
        self.engine.after_commit(s, lambda: self.engine.logs.mark_reviewed(subject))

    async def _assess_subject(self, s: AsyncSession, subject: str, user_id: str) -> model.Assessment | None:
        if subject.startswith("users/"):
            return await self.engine.assess_user(s, user_id)
        if pet_id := id_of(subject, "pets"):
            return await self.engine.assess_listing(s, owner_id=user_id, pet_id=pet_id)
        flags = await store.message_flags(s, subject) if subject.startswith("rooms/") else None
        if flags is not None:
            return await self.engine.assess_message(s, sender_id=user_id, name=subject, flags=flags)
        return None  # a business, or content the service never saw: no features to label


class FraudModule(ServiceModule):
    migrations = Path(__file__).parent / "migrations"

    def __init__(self, rt: Runtime, spec: ServiceSpec):
        super().__init__(rt, spec)
        self.engine = Engine(self.db, make_logs(url=rt.settings.fraud_logs_url, db=self.db))
        self.extractors = Extractors(self.engine, rt.blobs)
        self._job: asyncio.Task | None = None

    def servicers(self) -> Mapping[str, object]:
        return {"petplatform.fraud.v1.FraudService": FraudServicer(self.engine)}

    def consumers(self) -> Mapping[str, Effects]:
        x = self.extractors
        return {
            # One queue: account, listing and message events in the order they come, so a listing right after
            # sign-up finds its account.
            "fraud.signals": {auth_events.UserCreated: x.on_user_created,
                              pet_events.PetCreated: Outside(x.on_pet_changed),  # photos: blob reads
                              pet_events.PetUpdated: Outside(x.on_pet_changed),
                              pet_events.PetDeleted: x.on_pet_deleted, chat_events.MessageSent: x.on_message_sent,
                              marketplace_events.BookingCancelled: x.on_booking_cancelled},
            "fraud.labels": {admin_events.ModerationActionTaken: x.on_moderation},
        }

    async def start(self) -> None:
        await self.engine.train()
        period = self.rt.settings.fraud_train_seconds
        if period > 0:
            self._job = asyncio.create_task(self.engine.run_periodically(period), name="fraud-training")

    async def drain(self) -> None:
        if self._job:
            self._job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._job
        await self.engine.settle()

    async def stop(self) -> None:
        await self.engine.settle()  # log writes of the events applied since drain(), before the database goes
        await super().stop()
