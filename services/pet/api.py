"""PetService: listings, search, photos and health records. Only owners (or admins) change a pet."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
import datetime as dt
import logging
from typing import Any

from google.protobuf import field_mask_pb2
from google.type import latlng_pb2
import grpc
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import errors, media, pagination, principal
from mesh.interceptor import send_headers
from mesh.moderation import AUTOMATIC_HOLD_REASON
from mesh.blobs import BlobStore
from mesh.events import emit
from mesh.resources import check_mask, decode_page_token, new_id, page_size, parse_name, timestamp
from mesh.sql import Database, Row, utcnow
from petplatform.pet.v1 import events_pb2 as pet_events
from petplatform.pet.v1 import pet_pb2, pet_pb2_grpc
from services.pet import domain, search, store
from services.pet.cache import PetCache
from services.pet.screening import SCREENING, Screening
from services.pet.watch import WatchHub

log = logging.getLogger(__name__)

PET_TYPE = "pet.petplatform.dev/Pet"


def next_update_time(previous: pet_pb2.Pet) -> dt.datetime:
    """Now, but always after the pet's last update, whatever another replica's clock said: watchers
    order a pet's events by it."""
    return max(utcnow(), previous.update_time.ToDatetime(tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=1))


def too_many_photos() -> errors.ApiError:
    return errors.failed_precondition(f"a pet has at most {domain.MAX_PHOTOS_PER_PET} photos", "TOO_MANY_PHOTOS",
                                      limit=domain.MAX_PHOTOS_PER_PET)


def today() -> dt.date:
    return utcnow().date()


def authorization(context: grpc.aio.ServicerContext) -> str:
    """The caller's own authorization header, forwarded to fraud (there is no service identity yet)."""
    return next((v for k, v in context.invocation_metadata() or () if k == "authorization" and isinstance(v, str)),
                "")


def photo_key(pet_id: str, photo_id: str) -> str:
    return f"pets/{pet_id}/photos/{photo_id}"


class PetServicer(pet_pb2_grpc.PetServiceServicer):
    def __init__(self, db: Database, blobs: BlobStore, hub: WatchHub, cache: PetCache, screening: Screening):
        self.db = db
        self.blobs = blobs
        self.hub = hub
        self.cache = cache
        self.screening = screening

    # --- pets ---

    async def CreatePet(self, request: pet_pb2.CreatePetRequest,
                        context: grpc.aio.ServicerContext) -> pet_pb2.CreatePetResponse:
        caller = principal.require()
        pet = request.pet
        domain.check_pet(pet, domain.WRITABLE, today())
        domain.check_request_id(request.request_id)
        if request.request_id:
            async with self.db.read() as s:
                existing = await store.find_pet_id_by_request(s, owner_id=caller.user_id,
                                                              request_id=request.request_id)
            if existing:
                return pet_pb2.CreatePetResponse(pet=await self._get(existing))
        columns = self._columns(pet, domain.WRITABLE - {"status"})
        if await self.screening.holds(pet, authorization=authorization(context)):
            columns.update(moderation=pet_pb2.Pet.MODERATION_HELD, moderation_reason=AUTOMATIC_HOLD_REASON,
                           moderation_case=SCREENING)
        pet_id = new_id()
        now = utcnow()
        try:
            async with self.db.transaction() as s:
                await store.add_pet(s, pet_id=pet_id, owner_id=caller.user_id, request_id=request.request_id or None,
                                    status=pet.status or pet_pb2.Pet.STATUS_AVAILABLE, create_time=now,
                                    columns=columns)
                created = await self._message(s, pet_id)
                await emit(s, pet_events.PetCreated(pet=created))
        except IntegrityError:  # a concurrent retry with the same request_id won the race
            async with self.db.read() as s:
                existing = await store.find_pet_id_by_request(s, owner_id=caller.user_id,
                                                              request_id=request.request_id)
            if not existing:
                raise
            return pet_pb2.CreatePetResponse(pet=await self._get(existing))
        return pet_pb2.CreatePetResponse(pet=created)

    async def GetPet(self, request: pet_pb2.GetPetRequest, context: grpc.aio.ServicerContext) -> pet_pb2.GetPetResponse:
        (pet_id,) = parse_name(request.name, "pets/{}")
        cached = self.cache.get(pet_id)
        # Those who may change the pet always read it (services/pet/cache.py: read-your-writes).
        if cached is not None and not self._may_change(cached.pet):
            answer = cached
        else:
            ticket = self.cache.ticket()
            answer = pet_pb2.GetPetResponse(pet=await self._get(pet_id))
            self.cache.put(pet_id, answer, ticket)
        if not domain.visible_to(answer.pet, principal.current()):  # held or hidden: as if it were not there
            raise errors.not_found(PET_TYPE, request.name)
        return answer

    async def UpdatePet(self, request: pet_pb2.UpdatePetRequest,
                        context: grpc.aio.ServicerContext) -> pet_pb2.UpdatePetResponse:
        (pet_id,) = parse_name(request.pet.name, "pets/{}", "pet.name")
        paths = check_mask(request.update_mask, domain.WRITABLE)
        async with self.db.transaction() as s:
            await self._owned(s, pet_id, lock=True)
            pet = await self._message(s, pet_id)
            previous = pet_pb2.Pet()
            previous.CopyFrom(pet)
            field_mask_pb2.FieldMask(paths=sorted(paths)).MergeMessage(
                request.pet, pet, replace_message_field=True, replace_repeated_field=True)
            domain.check_pet(pet, paths, today())
            updated = await self._changed(s, previous, sorted(paths), self._columns(pet, paths))
        self.cache.drop(pet_id)  # on this replica at once; the others on its event
        return pet_pb2.UpdatePetResponse(pet=updated)

    async def DeletePet(self, request: pet_pb2.DeletePetRequest,
                        context: grpc.aio.ServicerContext) -> pet_pb2.DeletePetResponse:
        (pet_id,) = parse_name(request.name, "pets/{}")
        async with self.db.transaction() as s:
            await self._owned(s, pet_id, lock=True)
            gone = await self._message(s, pet_id)
            photo_ids = await store.delete_pet(s, pet_id)
            await emit(s, pet_events.PetDeleted(pet=gone))
        self.cache.drop(pet_id)
        await self._drop_blobs([photo_key(pet_id, p) for p in photo_ids])
        return pet_pb2.DeletePetResponse()

    async def ListPets(self, request: pet_pb2.ListPetsRequest,
                       context: grpc.aio.ServicerContext) -> pet_pb2.ListPetsResponse:
        size = page_size(request.page_size)
        position = decode_page_token(request.page_token, request)
        search.check(request)
        # The position's key in the token: the distance as a number, or the ISO create_time.
        by_distance = request.order_by == "distance"
        after = None
        if position:
            after = (float(position[0]) if by_distance else dt.datetime.fromisoformat(position[0]), position[1])
        statement, params = search.sql(request, today(), principal.current(), after, size)
        near = request.HasField("near")  # else every sort_key is 0: no distance to tell

        def answer(rows: Sequence[Row], pets: Mapping[str, pet_pb2.Pet]) -> pet_pb2.ListPetsResponse:
            """The page of these rows; a pet deleted meanwhile (not in `pets`) is left out."""
            rows, token = pagination.page(
                rows, size, lambda r: [r.sort_key if by_distance else r.create_time.isoformat(), r.id], request)
            out = pet_pb2.ListPetsResponse(next_page_token=token)
            for r in rows:
                if (pet := pets.get(r.id)) is not None:
                    item = out.pets.add()
                    item.CopyFrom(pet)
                    if near:
                        item.distance_km = round(r.sort_key, 3)
            return out

        # Mostly every pet of the page is kept built at the version its row has: the page's one statement is
        # then the whole read (one round trip). Else the page and the pets are read again in one snapshot.
        rows = await self.db.select(statement, params)
        page = rows[:size]
        pets = self.cache.versions(page)
        if len(pets) == len(page):
            return answer(rows, pets)

        async def read(s: AsyncSession) -> pet_pb2.ListPetsResponse:
            rows = await store.find_pets(s, statement, params)
            return answer(rows, await self._versions(s, rows))
        return await self.db.reading(read)

    async def WatchPets(self, request: pet_pb2.WatchPetsRequest,
                        context: grpc.aio.ServicerContext) -> AsyncIterator[pet_pb2.WatchPetsResponse]:
        # The filter fields share ListPets' numbers (the contract reserves the rest), so the request is
        # a ListPetsRequest on the wire, checked the same way; changes are matched in memory (search.py).
        r = pet_pb2.ListPetsRequest.FromString(request.SerializeToString())
        search.check(r)
        caller = principal.current()
        async with self.hub.watch() as changes:
            await send_headers(context)  # accepted: the client now knows the stream is open
            async for before, after in changes:
                now = today()
                # Ages drift by the day: whether it matched before is judged without them, so a pet
                # that aged out of the search since it was shown is still taken back.
                shown = before if (before is not None and domain.visible_to(before, caller)
                                   and search.matches(r, before, now, ages=False)) else None
                if after is not None and domain.visible_to(after, caller) and search.matches(r, after, now):
                    pet = pet_pb2.Pet()
                    pet.CopyFrom(after)
                    if r.HasField("near"):
                        pet.distance_km = round(search.distance_km(r.near, pet.location), 3)
                    change = "CHANGE_UPDATED" if shown is not None else "CHANGE_ADDED"
                    yield pet_pb2.WatchPetsResponse(change=change, pet=pet)
                elif shown is not None:
                    yield pet_pb2.WatchPetsResponse(change="CHANGE_REMOVED", pet=pet_pb2.Pet(name=shown.name))

    async def mark_adopted(self, s: AsyncSession, pet_id: str) -> None:
        """adoption.completed (matching): the pet becomes adopted, once; a pet deleted or adopted
        already stays as it is."""
        if await store.find_pet_owner(s, pet_id, lock=True) is None:
            return
        previous = await self._message(s, pet_id)
        if previous.status != pet_pb2.Pet.STATUS_ADOPTED:
            await self._changed(s, previous, ["status"], {"status": pet_pb2.Pet.STATUS_ADOPTED})

    # --- moderation ---

    async def hide(self, s: AsyncSession, pet_id: str, *, moderation: int, reason: str, source: str) -> None:
        """Holds or hides a pet for `source` (a case, or the owner's suspended account), once; a hidden pet is not
        held back down, but the hold is remembered under the hide (a reversed hide falls back to it). Its
        pet.updated takes it out of feeds and watches, and out of every replica's cache."""
        if await store.find_pet_owner(s, pet_id, lock=True) is None:
            return  # deleted meanwhile
        previous = await self._message(s, pet_id)
        held = moderation == pet_pb2.Pet.MODERATION_HELD
        hold = {"moderation_hold_case": source, "moderation_hold_reason": reason} if held else {}
        if previous.moderation == pet_pb2.Pet.MODERATION_HIDDEN and held:
            await store.update_pet(s, pet_id, hold)
            return
        held_by = await store.moderation_case(s, pet_id)
        if previous.moderation == moderation and held_by == source:
            return
        if held_by == SCREENING and moderation == pet_pb2.Pet.MODERATION_HELD:
            # The case fraud opened for a listing held before publishing takes the hold over (its reversal
            # shows the listing); the owner sees no change, nor the case's reason.
            await store.update_pet(s, pet_id, {"moderation_case": source})
            return
        await self._changed(s, previous, ["moderation", "moderation_reason"],
                            {"moderation": moderation, "moderation_reason": reason, "moderation_case": source, **hold})

    async def show(self, s: AsyncSession, pet_id: str, *, source: str) -> None:
        """Lifts what `source` (a case, or the owner's suspension) put on a pet: its hold, or its hide, after
        which the pet is held again if a hold stands under the hide (of that case or another), else shown.
        A later decision of another source stands."""
        if await store.find_pet_owner(s, pet_id, lock=True) is None:
            return
        found = await store.moderation_of(s, pet_id)
        if found is None:
            return
        lifted_hold = {"moderation_hold_case": None, "moderation_hold_reason": ""}
        if found.moderation_case != source:
            if found.moderation_hold_case == source:  # a hold under another source's hide: forget it
                await store.update_pet(s, pet_id, lifted_hold)
            return
        previous = await self._message(s, pet_id)
        if previous.moderation == pet_pb2.Pet.MODERATION_HIDDEN and found.moderation_hold_case:
            await self._changed(s, previous, ["moderation", "moderation_reason"],
                                {"moderation": pet_pb2.Pet.MODERATION_HELD,
                                 "moderation_reason": found.moderation_hold_reason,
                                 "moderation_case": found.moderation_hold_case})
            return
        await self._changed(s, previous, ["moderation", "moderation_reason"],
                            {"moderation": pet_pb2.Pet.MODERATION_VISIBLE, "moderation_reason": "",
                             "moderation_case": None, **lifted_hold})

    async def hold_pets_of(self, s: AsyncSession, owner_id: str, reason: str) -> None:
        """A suspended or banned owner's visible pets are held until the account is reinstated."""
        for pet_id in await store.find_pets_of_owner(s, owner_id):
            if await store.moderation_case(s, pet_id) is None:
                await self.hide(s, pet_id, moderation=pet_pb2.Pet.MODERATION_HELD, reason=reason,
                                source=f"users/{owner_id}")

    async def release_pets_of(self, s: AsyncSession, owner_id: str) -> None:
        for pet_id in await store.find_pets_of_owner(s, owner_id):
            await self.show(s, pet_id, source=f"users/{owner_id}")

    # --- photos ---

    async def UploadPetPhoto(self, request: pet_pb2.UploadPetPhotoRequest,
                             context: grpc.aio.ServicerContext) -> pet_pb2.UploadPetPhotoResponse:
        (pet_id,) = parse_name(request.parent, "pets/{}", "parent")
        async with self.db.read() as s:
            pet = await self._owned(s, pet_id)
        if pet.photo_count >= domain.MAX_PHOTOS_PER_PET:  # early, so a full pet costs no decoding; enforced below
            raise too_many_photos()
        content_type, width, height = await asyncio.get_running_loop().run_in_executor(
            media.decoders, domain.check_photo, request.content)
        photo_id = new_id()
        key = photo_key(pet_id, photo_id)
        await self.blobs.put(key, request.content, content_type)
        now = utcnow()
        try:
            async with self.db.transaction() as s:
                # Enforces the limit atomically, and holds the pet's row lock until the photo row is in.
                slot = await store.take_photo_slot(s, pet_id, limit=domain.MAX_PHOTOS_PER_PET)
                await self._owned(s, pet_id)  # still there and still theirs
                if not slot:
                    raise too_many_photos()
                previous = await self._message(s, pet_id)
                await store.add_photo(s, photo_id=photo_id, pet_id=pet_id, content_type=content_type,
                                      size_bytes=len(request.content), width=width, height=height, create_time=now)
                await self._changed(s, previous, ["photos"])
        except BaseException:
            await self._drop_blobs([key])  # no row, no blob
            raise
        self.cache.drop(pet_id)
        return pet_pb2.UploadPetPhotoResponse(photo=pet_pb2.Photo(
            name=key, uri=await self.blobs.url(key), content_type=content_type, size_bytes=len(request.content),
            width=width, height=height, create_time=timestamp(now)))

    async def DeletePetPhoto(self, request: pet_pb2.DeletePetPhotoRequest,
                             context: grpc.aio.ServicerContext) -> pet_pb2.DeletePetPhotoResponse:
        pet_id, photo_id = parse_name(request.name, "pets/{}/photos/{}")
        async with self.db.transaction() as s:
            await self._owned(s, pet_id, lock=True)
            previous = await self._message(s, pet_id)
            if not await store.delete_photo(s, pet_id=pet_id, photo_id=photo_id):
                raise errors.not_found("pet.petplatform.dev/Photo", request.name)
            await self._changed(s, previous, ["photos"])
        self.cache.drop(pet_id)
        await self._drop_blobs([photo_key(pet_id, photo_id)])
        return pet_pb2.DeletePetPhotoResponse()

    # --- health records ---

    async def CreateHealthRecord(self, request: pet_pb2.CreateHealthRecordRequest,
                                 context: grpc.aio.ServicerContext) -> pet_pb2.CreateHealthRecordResponse:
        (pet_id,) = parse_name(request.parent, "pets/{}", "parent")
        rec = request.health_record
        domain.check_health_record(rec, today())
        record_id = new_id()
        now = utcnow()
        async with self.db.transaction() as s:
            await self._owned(s, pet_id)
            when, _ = domain.to_date(rec.date)
            await store.add_health_record(s, record_id=record_id, pet_id=pet_id, kind=rec.kind,
                                          title=rec.title.strip(), notes=rec.notes, date=when,
                                          veterinarian=rec.veterinarian, create_time=now)
        out = pet_pb2.HealthRecord()
        out.CopyFrom(rec)
        out.name, out.title = f"pets/{pet_id}/healthRecords/{record_id}", rec.title.strip()
        out.create_time.FromDatetime(now)
        return pet_pb2.CreateHealthRecordResponse(health_record=out)

    async def ListHealthRecords(self, request: pet_pb2.ListHealthRecordsRequest,
                                context: grpc.aio.ServicerContext) -> pet_pb2.ListHealthRecordsResponse:
        (pet_id,) = parse_name(request.parent, "pets/{}", "parent")
        size = page_size(request.page_size)
        position = decode_page_token(request.page_token, request)
        after = (dt.date.fromisoformat(position[0]), position[1]) if position else None
        async with self.db.read() as s:
            # Health records are private to the owner and admins. When the adoption flow exists, the
            # adopter of an accepted application is to be let in here too.
            await self._owned(s, pet_id, "read its health records")
            rows = await store.list_health_records(s, pet_id, after=after, size=size)
        rows, token = pagination.page(rows, size, lambda r: [r.date.isoformat(), r.id], request)
        return pet_pb2.ListHealthRecordsResponse(next_page_token=token, health_records=[pet_pb2.HealthRecord(
            name=f"pets/{pet_id}/healthRecords/{r.id}", kind=r.kind, title=r.title, notes=r.notes,
            date=domain.from_date(r.date), veterinarian=r.veterinarian, create_time=timestamp(r.create_time))
            for r in rows])

    # --- helpers ---

    @staticmethod
    def _may_change(pet: pet_pb2.Pet) -> bool:
        caller = principal.current()
        return caller is not None and domain.may_change(caller, pet.owner.removeprefix("users/"))

    async def _owned(self, s: AsyncSession, pet_id: str, doing: str = "change it", lock: bool = False) -> Row:
        """The pet row (id, owner_id, photo_count), if the caller may change it (or do what `doing` says).
        PERMISSION_DENIED otherwise, not NOT_FOUND: pets are public, their existence is no secret."""
        row = await store.find_pet_owner(s, pet_id, lock=lock)
        if row is None:
            raise errors.not_found(PET_TYPE, f"pets/{pet_id}")
        if not domain.may_change(principal.require(), row.owner_id):
            raise errors.permission_denied(f"only the pet's owner (or an admin) can {doing}", "NOT_OWNER")
        return row

    async def _changed(self, s: AsyncSession, previous: pet_pb2.Pet, paths: list[str],
                       columns: Mapping[str, Any] | None = None) -> pet_pb2.Pet:
        """Every change to a pet ends here: its columns, a newer update_time, and pet.updated with the
        pet before and after. Returns the pet as it is now."""
        pet_id = previous.name.removeprefix("pets/")
        await store.update_pet(s, pet_id, {"update_time": next_update_time(previous), **(columns or {})})
        pet = await self._message(s, pet_id)
        await emit(s, pet_events.PetUpdated(
            pet=pet, previous=previous, update_mask=field_mask_pb2.FieldMask(paths=paths)))
        return pet

    @staticmethod
    def _columns(pet: pet_pb2.Pet, fields: set[str]) -> dict[str, Any]:
        """The stored columns of these fields of a pet."""
        out: dict[str, Any] = {}
        for f in fields:
            if f == "location":
                has = pet.HasField("location")
                out.update(latitude=pet.location.latitude if has else None,
                           longitude=pet.location.longitude if has else None)
            elif f == "birth_date":
                when, day_known = domain.to_date(pet.birth_date) if pet.HasField("birth_date") else (None, True)
                out.update(birth_date=when, birth_day_known=day_known)
            elif f in ("display_name", "breed"):
                out[f] = getattr(pet, f).strip()
            elif f == "listing":
                out[f] = domain.listing(pet.listing)
            else:
                out[f] = getattr(pet, f)
        if fields & set(search.TEXT_COLUMNS):
            out.update(search.keys(pet))
        return out

    async def _get(self, pet_id: str) -> pet_pb2.Pet:
        return await self.db.reading(lambda s: self._message(s, pet_id))

    async def _message(self, s: AsyncSession, pet_id: str) -> pet_pb2.Pet:
        row = await store.find_pet(s, pet_id)
        if row is None:
            raise errors.not_found(PET_TYPE, f"pets/{pet_id}")
        return (await self._messages(s, [row]))[0]

    async def _versions(self, s: AsyncSession, rows: Sequence[Row]) -> dict[str, pet_pb2.Pet]:
        """The pets of a page's rows (id, update_time, ...) by id, built only when the cache has not the row's
        version; a pet deleted meanwhile (PostgreSQL reads each statement as committed then) is left out."""
        found = self.cache.versions(rows)
        missing = [r.id for r in rows if r.id not in found]
        if missing:
            full = await store.find_pets_by_id(s, missing)
            for r, built in zip(full, await self._messages(s, full), strict=True):
                found[r.id] = built
                self.cache.keep_version(r.id, r.update_time, built)
        return found

    async def _messages(self, s: AsyncSession, rows: Sequence[Row]) -> list[pet_pb2.Pet]:
        ids = [r.id for r in rows]
        by_pet: dict[str, list[Row]] = {i: [] for i in ids}
        if ids:
            for p in await store.find_photos(s, ids):
                by_pet[p.pet_id].append(p)
        now = today()
        out = []
        for r in rows:
            pet = pet_pb2.Pet(
                name=f"pets/{r.id}", display_name=r.display_name, species=r.species, breed=r.breed, sex=r.sex,
                size=r.size, description=r.description, status=r.status, good_with_children=r.good_with_children,
                good_with_dogs=r.good_with_dogs, good_with_cats=r.good_with_cats, owner=f"users/{r.owner_id}",
                listing=r.listing, energy=r.energy, moderation=r.moderation,
                moderation_reason=r.moderation_reason,
                create_time=timestamp(r.create_time), update_time=timestamp(r.update_time))
            if r.birth_date:
                pet.birth_date.CopyFrom(domain.from_date(r.birth_date, r.birth_day_known))
                pet.age_months = domain.months_between(r.birth_date, now)
            if r.latitude is not None:
                pet.location.CopyFrom(latlng_pb2.LatLng(latitude=r.latitude, longitude=r.longitude))
            for p in by_pet[r.id]:
                key = photo_key(r.id, p.id)
                pet.photos.append(pet_pb2.Photo(
                    name=key, uri=await self.blobs.url(key), content_type=p.content_type, size_bytes=p.size_bytes,
                    width=p.width, height=p.height, create_time=timestamp(p.create_time)))
            out.append(pet)
        return out

    async def _drop_blobs(self, keys: list[str]) -> None:
        for key in keys:
            try:
                await self.blobs.delete(key)
            except Exception:  # an orphaned blob is harmless; a failed delete must not fail the RPC
                log.warning("could not delete blob %s", key, exc_info=True)
