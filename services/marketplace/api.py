"""MarketplaceService: businesses, their services and hours, free slots, and bookings.

Every mutating RPC is idempotent by its request id (the first answer is stored with the change and
returned to a retry) and, where that is natural, by state too (accepting an accepted booking returns
it). Money never moves here: accepting, cancelling and completing publish events the payment service
acts on, and its payment.processed / payment.failed / refund.processed move the booking on (module)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
import asyncio
import datetime as dt
import logging
from typing import TypeVar

from google.protobuf.message import Message
import grpc
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import errors, media, pagination, principal
from mesh.blobs import BlobStore
from mesh.events import emit
from mesh.money import from_minor
from mesh.principal import Principal
from mesh.resources import (check_mask, decode_page_token, encode_page_token, new_id, page_size, parse_name,
                            resolve_user, timestamp)
from mesh.sql import Database, Row
from petplatform.marketplace.v1 import events_pb2 as ev
from petplatform.marketplace.v1 import marketplace_pb2 as m
from petplatform.marketplace.v1 import marketplace_pb2_grpc
from petplatform.pet.v1 import pet_pb2, pet_pb2_grpc
from services.marketplace import calendar, domain, photos, policy, reviews, store

log = logging.getLogger(__name__)

BUSINESS_TYPE = "marketplace.petplatform.dev/Business"
SERVICE_TYPE = "marketplace.petplatform.dev/Service"
BOOKING_TYPE = "marketplace.petplatform.dev/Booking"
REVIEW_TYPE = "marketplace.petplatform.dev/BookingReview"
PEER_DEADLINE_SECONDS = 2.0
ATTEMPTS = 3
B = m.Booking
M = TypeVar("M", bound=Message)
OPEN = (B.STATE_REQUESTED, B.STATE_ACCEPTED)  # states that hold places
LIVE = (*OPEN, B.STATE_IN_PROGRESS)  # states a service's changes must not pull the slot from under


def business_message(r: Row, kinds: list[int], *, private: bool, km: float | None = None,
                     pictures: list[m.BusinessPhoto] | None = None) -> m.Business:
    return m.Business(
        name=f"businesses/{r.id}", owner=f"users/{r.owner_id}", display_name=r.display_name,
        description=r.description, kinds=kinds,  # type: ignore[arg-type]  # enum values as ints
        location={"latitude": r.latitude, "longitude": r.longitude},
        service_radius_km=r.service_radius_km, time_zone=r.time_zone, verified=r.verified,
        payout_account=r.payout_account if private else "", distance_km=round(km, 3) if km is not None else 0,
        rating=round(r.rating_sum / r.rating_count, 2) if r.rating_count else 0, review_count=r.rating_count,
        create_time=timestamp(r.create_time), update_time=timestamp(r.update_time), photos=pictures or [],
        delete_time=timestamp(r.delete_time) if private and r.delete_time else None)


def service_message(r: Row) -> m.Service:
    return m.Service(
        name=f"businesses/{r.business_id}/services/{r.id}", display_name=r.display_name, kind=r.kind,
        price=from_minor(r.price_minor, r.currency), duration_minutes=r.duration_minutes, capacity=r.capacity,
        species=domain.uncsv(r.species), sizes=domain.uncsv(r.sizes),  # type: ignore[arg-type]
        cancellation_policy=r.cancellation_policy,
        create_time=timestamp(r.create_time), update_time=timestamp(r.update_time or r.create_time))


def booking_message(r: Row) -> m.Booking:
    return m.Booking(
        name=f"bookings/{r.id}", owner=f"users/{r.owner_id}",
        service=f"businesses/{r.business_id}/services/{r.service_id}",
        business=f"businesses/{r.business_id}", business_owner=f"users/{r.business_owner_id}",
        pets=[f"pets/{p}" for p in r.pets.split(",")], start_time=timestamp(r.start_time),
        end_time=timestamp(r.end_time), state=r.state, price=from_minor(r.price_minor, r.currency),
        cancellation_policy=r.cancellation_policy, time_zone=r.time_zone, payment_status=r.payment_status,
        refunded=from_minor(r.refunded_minor, r.currency) if r.refunded_minor is not None else None,
        cancelled_by=r.cancelled_by, note=r.note, expire_time=timestamp(r.expire_time),
        create_time=timestamp(r.create_time), update_time=timestamp(r.update_time),
        review_deadline=timestamp(r.review_deadline) if r.review_deadline else None)


def authorization(context: grpc.aio.ServicerContext) -> str:
    return next((v for k, v in context.invocation_metadata() or () if k == "authorization" and isinstance(v, str)),
                "")


def hours_of(rows) -> list[calendar.Hours]:
    return [calendar.Hours(r.weekday, dt.time(r.open_minute // 60, r.open_minute % 60),
                           dt.time(23, 59, 59, 999999) if r.close_minute == 1440 else
                           dt.time(r.close_minute // 60, r.close_minute % 60)) for r in rows]


class MarketplaceServicer(marketplace_pb2_grpc.MarketplaceServiceServicer):
    def __init__(self, db: Database, *, blobs: BlobStore, pets: Callable[[], grpc.aio.Channel],
                 now: Callable[[], dt.datetime], request_ttl: dt.timedelta):
        self.db = db
        self.blobs = blobs
        self.pets = pets
        self.now = now
        self.request_ttl = request_ttl

    async def once(self, caller: Principal, method: str, request_id: str, response_type: type[M],
                   work: Callable[[AsyncSession, dt.datetime], Awaitable[M]]) -> M:
        """Runs `work` in one writing transaction, at most once per (caller, method, request id): a
        retry gets the first answer. A concurrent retry loses on the answer's primary key, its whole
        transaction rolls back, and it reads the winner's answer."""
        domain.check_request_id(request_id)
        for n in range(ATTEMPTS):
            try:
                async with self.db.transaction() as s:
                    if request_id:
                        prior = await store.answered(s, caller_id=caller.user_id, method=method, request_id=request_id)
                        if prior is not None:
                            return response_type.FromString(prior)
                    now = self.now()
                    response = await work(s, now)
                    if request_id:
                        await store.record_answer(s, caller_id=caller.user_id, method=method, request_id=request_id,
                                                  response=response.SerializeToString(), now=now)
                    return response
            except IntegrityError:
                if n == ATTEMPTS - 1:
                    raise
                log.info("%s: lost a race on a request id or a key; trying again", method)
        raise AssertionError("unreachable")

    # --- businesses ---

    async def _business(self, s: AsyncSession, name: str, field: str = "name", *, lock: bool = False,
                        deleted: bool = False) -> Row:
        """`deleted`: a deleted business too (only its owner and admins read it)."""
        (business_id,) = parse_name(name, "businesses/{}", field)
        row = await store.find_business(s, business_id, lock=lock)
        if row is None or (row.delete_time is not None and not (deleted and self._owns(principal.current(), row))):
            raise errors.not_found(BUSINESS_TYPE, name)
        return row

    @staticmethod
    def _owns(caller: Principal | None, business: Row) -> bool:
        return caller is not None and (caller.user_id == business.owner_id or caller.is_admin)

    async def _photos(self, s: AsyncSession, business_ids: list[str]) -> dict[str, list[m.BusinessPhoto]]:
        rows = await store.business_photos_of(s, business_ids)
        return {b: [await photos.message(self.blobs, r) for r in rs] for b, rs in rows.items()}

    async def _business_out(self, s: AsyncSession, row: Row, caller: Principal | None) -> m.Business:
        kinds = (await store.business_kinds(s, [row.id])).get(row.id, [])
        pictures = (await self._photos(s, [row.id])).get(row.id, [])
        return business_message(row, kinds, private=self._owns(caller, row), pictures=pictures)

    async def CreateBusiness(self, request: m.CreateBusinessRequest, context) -> m.CreateBusinessResponse:
        caller = principal.require()
        domain.check_business(request.business, domain.BUSINESS_WRITABLE | {"location"})
        b = request.business

        async def work(s: AsyncSession, now: dt.datetime) -> m.CreateBusinessResponse:
            business_id = new_id()
            await store.add_business(s, id=business_id, owner_id=caller.user_id, display_name=b.display_name.strip(),
                                     description=b.description, latitude=b.location.latitude,
                                     longitude=b.location.longitude, service_radius_km=b.service_radius_km,
                                     time_zone=b.time_zone, verified=False, payout_account=b.payout_account,
                                     create_time=now, update_time=now)
            row = await store.get_business(s, business_id)
            return m.CreateBusinessResponse(business=await self._business_out(s, row, caller))
        return await self.once(caller, "CreateBusiness", request.request_id, m.CreateBusinessResponse, work)

    async def GetBusiness(self, request: m.GetBusinessRequest, context) -> m.GetBusinessResponse:
        async with self.db.read() as s:
            row = await self._business(s, request.name, deleted=True)
            return m.GetBusinessResponse(business=await self._business_out(s, row, principal.current()))

    async def UpdateBusiness(self, request: m.UpdateBusinessRequest, context) -> m.UpdateBusinessResponse:
        caller = principal.require()
        fields = check_mask(request.update_mask, domain.BUSINESS_WRITABLE)
        domain.check_business(request.business, fields)
        b = request.business

        async def work(s: AsyncSession, now: dt.datetime) -> m.UpdateBusinessResponse:
            row = await self._business(s, b.name, "business.name", lock=True)
            if not self._owns(caller, row):
                raise errors.permission_denied("only the business's owner may change it")
            if "time_zone" in fields and b.time_zone != row.time_zone:
                # Slots are wall-clock times in the zone: a new zone moves them under open bookings
                # (which keep the zone copied onto them for their cancellation cut-offs).
                open_count = await store.open_bookings_of_business(s, row.id, states=LIVE)
                if open_count:
                    raise errors.failed_precondition(
                        f"the business has {open_count} open booking(s): its slots cannot move to another time zone",
                        "BUSINESS_HAS_OPEN_BOOKINGS", open_bookings=open_count)
            values: dict = {"update_time": now}
            for f in fields:
                if f == "location":
                    values.update(latitude=b.location.latitude, longitude=b.location.longitude)
                else:
                    values[f] = getattr(b, f).strip() if f == "display_name" else getattr(b, f)
            await store.update_business(s, row.id, **values)
            if "payout_account" in fields and b.payout_account != row.payout_account:
                await emit(s, ev.BusinessPayoutAccountChanged(business=f"businesses/{row.id}",
                                                              payout_account=b.payout_account))
            row = await store.get_business(s, row.id)
            return m.UpdateBusinessResponse(business=await self._business_out(s, row, caller))
        return await self.once(caller, "UpdateBusiness", request.request_id, m.UpdateBusinessResponse, work)

    async def VerifyBusiness(self, request: m.VerifyBusinessRequest, context) -> m.VerifyBusinessResponse:
        caller = principal.require()

        async def work(s: AsyncSession, now: dt.datetime) -> m.VerifyBusinessResponse:
            row = await self._business(s, request.name, lock=True)
            if not row.verified:
                await store.update_business(s, row.id, verified=True, update_time=now)
                row = await store.get_business(s, row.id)
            return m.VerifyBusinessResponse(business=await self._business_out(s, row, caller))
        return await self.once(caller, "VerifyBusiness", request.request_id, m.VerifyBusinessResponse, work)

    async def DeleteBusiness(self, request: m.DeleteBusinessRequest, context) -> m.DeleteBusinessResponse:
        caller = principal.require()

        async def work(s: AsyncSession, now: dt.datetime) -> m.DeleteBusinessResponse:
            row = await self._business(s, request.name, lock=True)
            if not self._owns(caller, row):
                raise errors.permission_denied("only the business's owner may delete it")
            # Its services locked first: a booking being made (its service read FOR SHARE) either
            # commits before and is counted here, or finds the service withdrawn after.
            services = await store.services_of_business(s, row.id)
            ongoing = await store.open_bookings_of_business(s, row.id, states=(B.STATE_IN_PROGRESS,))
            upcoming = await store.bookings_of_business(s, row.id, states=OPEN)
            if ongoing or (upcoming and not request.force):
                raise errors.failed_precondition(
                    f"the business has {ongoing + len(upcoming)} open booking(s): finish those in progress"
                    + ("" if ongoing else "; cancel the others, or delete with force to cancel them"),
                    "BUSINESS_HAS_OPEN_BOOKINGS", open_bookings=ongoing + len(upcoming),
                    in_progress=ongoing)
            for booking_id in upcoming:
                booking = await store.find_booking(s, booking_id, lock=True)
                assert booking is not None
                await self._cancel(s, booking, by_business=True, now=now)
            for service in services:
                await store.replace_hours(s, service.id, hours=[], closed=[])
                await store.forget_empty_slots(s, service.id, after=now)
                await store.update_service(s, service.id, delete_time=now, update_time=now)
            await store.update_business(s, row.id, delete_time=now, update_time=now)
            deleted = await self._business_out(s, await store.get_business(s, row.id), caller)
            await emit(s, ev.BusinessDeleted(business=deleted))
            return m.DeleteBusinessResponse(business=deleted)
        return await self.once(caller, "DeleteBusiness", request.request_id, m.DeleteBusinessResponse, work)

    async def ListBusinesses(self, request: m.ListBusinessesRequest, context) -> m.ListBusinessesResponse:
        caller = principal.require()
        owner = resolve_user(request.owner, "owner")
        if request.show_deleted and not (owner == caller.user_id or caller.is_admin):
            raise errors.permission_denied("only their owner and admins see deleted businesses", "NOT_OWNER")
        size = page_size(request.page_size)
        position = decode_page_token(request.page_token, request)
        after = (dt.datetime.fromisoformat(position[0]), position[1]) if position else None
        async with self.db.read() as s:
            rows = await store.businesses_of_owner(s, owner, deleted=request.show_deleted, after=after, size=size)
            rows, token = pagination.page(rows, size, lambda r: [r.create_time.isoformat(), r.id], request)
            ids = [r.id for r in rows]
            kinds = await store.business_kinds(s, ids)
            pictures = await self._photos(s, ids)
        return m.ListBusinessesResponse(
            businesses=[business_message(r, kinds.get(r.id, []), private=self._owns(caller, r),
                                         pictures=pictures.get(r.id)) for r in rows],
            next_page_token=token)

    async def SearchBusinesses(self, request: m.SearchBusinessesRequest, context) -> m.SearchBusinessesResponse:
        v: list[tuple[str, str]] = []
        if request.kind == 0 or request.kind not in m.ServiceKind.values():
            v.append(("kind", "must be a defined, specified kind"))
        if not request.HasField("near"):
            v.append(("near", "required"))
        else:
            domain.check_location(v, "near", request.near)
        if not 0 <= request.radius_km <= domain.MAX_RADIUS_KM:
            v.append(("radius_km", f"must be between 0 and {domain.MAX_RADIUS_KM:g}"))
        if v:
            raise errors.invalid_argument(*v)
        size = page_size(request.page_size)
        radius = request.radius_km or domain.DEFAULT_RADIUS_KM
        position = decode_page_token(request.page_token, request)
        dlat = radius / 111.0
        async with self.db.read() as s:
            rows = await store.businesses_offering(s, kind=request.kind, min_lat=request.near.latitude - dlat,
                                                   max_lat=request.near.latitude + dlat,
                                                   verified_only=request.verified_only)
            found = sorted(((km, r) for r in rows
                            if (km := domain.distance_km(request.near, r.latitude, r.longitude)) <= radius),
                           key=lambda kr: (kr[0], kr[1].id))
            if position is not None:
                found = [(km, r) for km, r in found if (km, r.id) > (position[0], position[1])]
            page = found[:size]
            kinds = await store.business_kinds(s, [r.id for _, r in page])
            pictures = await self._photos(s, [r.id for _, r in page])
        caller = principal.current()
        return m.SearchBusinessesResponse(
            businesses=[business_message(r, kinds.get(r.id, []), private=self._owns(caller, r), km=km,
                                         pictures=pictures.get(r.id)) for km, r in page],
            next_page_token=encode_page_token([page[-1][0], page[-1][1].id], request) if len(found) > size else "")

    # --- services and hours ---

    async def _service(self, s: AsyncSession, name: str, field: str = "name", *,
                       lock: store.Lock = None) -> tuple[Row, Row]:
        """A service that has not been withdrawn, and its business."""
        business_id, service_id = parse_name(name, "businesses/{}/services/{}", field)
        row = await store.find_service(s, service_id, lock=lock)
        if row is None or row.business_id != business_id or row.delete_time is not None:
            raise errors.not_found(SERVICE_TYPE, name)
        business = await store.find_business(s, business_id)
        assert business is not None  # a business's row stays when it is deleted (its services are withdrawn)
        return row, business

    async def CreateService(self, request: m.CreateServiceRequest, context) -> m.CreateServiceResponse:
        caller = principal.require()
        price, currency = domain.check_service(request.service)
        svc = request.service

        async def work(s: AsyncSession, now: dt.datetime) -> m.CreateServiceResponse:
            business = await self._business(s, request.parent, "parent")
            if not self._owns(caller, business):
                raise errors.permission_denied("only the business's owner may add services")
            service_id = new_id()
            await store.add_service(s, id=service_id, business_id=business.id, display_name=svc.display_name.strip(),
                                    kind=svc.kind, price_minor=price, currency=currency,
                                    duration_minutes=svc.duration_minutes, capacity=svc.capacity,
                                    species=domain.csv(sorted(set(svc.species))),
                                    sizes=domain.csv(sorted(set(svc.sizes))),
                                    cancellation_policy=policy.effective(svc.kind, svc.cancellation_policy),
                                    create_time=now)
            return m.CreateServiceResponse(service=service_message(await store.get_service(s, service_id)))
        return await self.once(caller, "CreateService", request.request_id, m.CreateServiceResponse, work)

    async def GetService(self, request: m.GetServiceRequest, context) -> m.GetServiceResponse:
        async with self.db.read() as s:
            row, _ = await self._service(s, request.name)
        return m.GetServiceResponse(service=service_message(row))

    async def ListServices(self, request: m.ListServicesRequest, context) -> m.ListServicesResponse:
        size = page_size(request.page_size)
        position = decode_page_token(request.page_token, request)
        after = (dt.datetime.fromisoformat(position[0]), position[1]) if position else None
        async with self.db.read() as s:
            business = await self._business(s, request.parent, "parent")
            rows = await store.list_services(s, business.id, after=after, size=size)
        rows, token = pagination.page(rows, size, lambda r: [r.create_time.isoformat(), r.id], request)
        return m.ListServicesResponse(services=[service_message(r) for r in rows], next_page_token=token)

    async def UpdateService(self, request: m.UpdateServiceRequest, context) -> m.UpdateServiceResponse:
        caller = principal.require()
        fields = check_mask(request.update_mask, domain.SERVICE_WRITABLE)
        price, currency = domain.check_service(request.service, fields)
        svc = request.service

        async def work(s: AsyncSession, now: dt.datetime) -> m.UpdateServiceResponse:
            # FOR UPDATE: a booking being made holds the service FOR SHARE, so it sees either all
            # of this change or none of it.
            row, business = await self._service(s, svc.name, "service.name", lock="update")
            if not self._owns(caller, business):
                raise errors.permission_denied("only the business's owner may change its services")
            values: dict = {"update_time": now}
            if "display_name" in fields:
                values["display_name"] = svc.display_name.strip()
            if "kind" in fields:
                values["kind"] = svc.kind
            if "price" in fields:
                values.update(price_minor=price, currency=currency)
            if "species" in fields:
                values["species"] = domain.csv(sorted(set(svc.species)))
            if "sizes" in fields:
                values["sizes"] = domain.csv(sorted(set(svc.sizes)))
            if fields & {"kind", "cancellation_policy"}:
                asked = svc.cancellation_policy if "cancellation_policy" in fields else row.cancellation_policy
                values["cancellation_policy"] = policy.effective(values.get("kind", row.kind), asked)
            if "duration_minutes" in fields and svc.duration_minutes != row.duration_minutes:
                await self._no_open_bookings(s, row, "its slots cannot change length")
                await store.forget_empty_slots(s, row.id, after=now)
                values["duration_minutes"] = svc.duration_minutes
            if "capacity" in fields and svc.capacity != row.capacity:
                if not await store.set_future_capacity(s, row.id, capacity=svc.capacity, after=now):
                    raise errors.failed_precondition(
                        "a future slot already holds more pets than that; cancel or move those bookings first",
                        "CAPACITY_BELOW_BOOKINGS", capacity=svc.capacity)
                values["capacity"] = svc.capacity
            await store.update_service(s, row.id, **values)
            return m.UpdateServiceResponse(service=service_message(await store.get_service(s, row.id)))
        return await self.once(caller, "UpdateService", request.request_id, m.UpdateServiceResponse, work)

    @staticmethod
    async def _no_open_bookings(s: AsyncSession, service: Row, why: str) -> None:
        open_count = await store.open_bookings_of(s, service.id, states=LIVE)
        if open_count:
            raise errors.failed_precondition(f"the service has {open_count} open booking(s): {why}",
                                             "SERVICE_HAS_OPEN_BOOKINGS", open_bookings=open_count)

    async def DeleteService(self, request: m.DeleteServiceRequest, context) -> m.DeleteServiceResponse:
        caller = principal.require()

        async def work(s: AsyncSession, now: dt.datetime) -> m.DeleteServiceResponse:
            row, business = await self._service(s, request.name, lock="update")
            if not self._owns(caller, business):
                raise errors.permission_denied("only the business's owner may withdraw its services")
            await self._no_open_bookings(s, row, "finish, decline or cancel them first")
            # Kept as a row (its bookings name it); without hours it offers no slots.
            await store.replace_hours(s, row.id, hours=[], closed=[])
            await store.forget_empty_slots(s, row.id, after=now)
            await store.update_service(s, row.id, delete_time=now, update_time=now)
            return m.DeleteServiceResponse()
        return await self.once(caller, "DeleteService", request.request_id, m.DeleteServiceResponse, work)

    # --- business photos ---

    async def _own_business(self, s: AsyncSession, name: str, caller: Principal, *, lock: bool = False) -> Row:
        row = await self._business(s, name, "parent", lock=lock)
        if not self._owns(caller, row):
            raise errors.permission_denied("only the business's owner may change its photos")
        return row

    async def UploadBusinessPhoto(self, request: m.UploadBusinessPhotoRequest,
                                  context) -> m.UploadBusinessPhotoResponse:
        caller = principal.require()
        domain.check_request_id(request.request_id)
        async with self.db.read() as s:
            if request.request_id and (prior := await store.answered(
                    s, caller_id=caller.user_id, method="UploadBusinessPhoto", request_id=request.request_id)):
                return m.UploadBusinessPhotoResponse.FromString(prior)  # a retry: not decoded or stored again
            business = await self._own_business(s, request.parent, caller)
            if len((await store.business_photos_of(s, [business.id])).get(business.id, [])) \
                    >= photos.MAX_PHOTOS_PER_BUSINESS:  # early, so a full business costs no decoding
                raise photos.too_many()
        content_type, width, height = await asyncio.get_running_loop().run_in_executor(
            media.decoders, photos.check, request.content)
        photo_id = new_id()
        key = photos.key(business.id, photo_id)
        await self.blobs.put(key, request.content, content_type)

        async def work(s: AsyncSession, now: dt.datetime) -> m.UploadBusinessPhotoResponse:
            # The business's row lock makes the count and the insert one step, however many race.
            await self._own_business(s, request.parent, caller, lock=True)
            if len((await store.business_photos_of(s, [business.id])).get(business.id, [])) \
                    >= photos.MAX_PHOTOS_PER_BUSINESS:
                raise photos.too_many()
            await store.add_business_photo(s, id=photo_id, business_id=business.id, content_type=content_type,
                                           size_bytes=len(request.content), width=width, height=height,
                                           create_time=now)
            await store.update_business(s, business.id, update_time=now)
            row = next(r for r in (await store.business_photos_of(s, [business.id]))[business.id] if r.id == photo_id)
            return m.UploadBusinessPhotoResponse(photo=await photos.message(self.blobs, row))
        try:
            response = await self.once(caller, "UploadBusinessPhoto", request.request_id,
                                       m.UploadBusinessPhotoResponse, work)
        except BaseException:
            await self._drop_blob(key)  # no row, no blob
            raise
        if not response.photo.name.endswith(f"/photos/{photo_id}"):
            await self._drop_blob(key)  # a concurrent retry stored its photo first: that one is the answer
        return response

    async def DeleteBusinessPhoto(self, request: m.DeleteBusinessPhotoRequest,
                                  context) -> m.DeleteBusinessPhotoResponse:
        caller = principal.require()
        business_id, photo_id = parse_name(request.name, "businesses/{}/photos/{}")

        async def work(s: AsyncSession, now: dt.datetime) -> m.DeleteBusinessPhotoResponse:
            await self._own_business(s, f"businesses/{business_id}", caller, lock=True)
            if not await store.delete_business_photo(s, business_id=business_id, photo_id=photo_id):
                raise errors.not_found(photos.PHOTO_TYPE, request.name)
            await store.update_business(s, business_id, update_time=now)
            return m.DeleteBusinessPhotoResponse()
        response = await self.once(caller, "DeleteBusinessPhoto", request.request_id, m.DeleteBusinessPhotoResponse,
                                   work)
        await self._drop_blob(photos.key(business_id, photo_id))
        return response

    async def _drop_blob(self, key: str) -> None:
        try:
            await self.blobs.delete(key)
        except Exception:  # an orphaned blob is harmless; a failed delete must not fail the RPC
            log.warning("could not delete blob %s", key, exc_info=True)

    async def _availability(self, s: AsyncSession, service: Row, business: Row) -> m.Availability:
        hours, closed = await store.hours_of(s, service.id)
        return m.Availability(
            name=f"businesses/{business.id}/services/{service.id}/availability", time_zone=business.time_zone,
            weekly_hours=[m.OpeningHours(day=h.weekday + 1, open_time={"hours": h.open_minute // 60,
                                                                         "minutes": h.open_minute % 60},
                                         close_time={"hours": h.close_minute // 60, "minutes": h.close_minute % 60})
                          for h in hours],
            closed_dates=[{"year": d.year, "month": d.month, "day": d.day} for d in closed])

    async def GetAvailability(self, request: m.GetAvailabilityRequest, context) -> m.GetAvailabilityResponse:
        async with self.db.read() as s:
            service, business = await self._service(s, request.name.removesuffix("/availability"))
            return m.GetAvailabilityResponse(availability=await self._availability(s, service, business))

    async def UpdateAvailability(self, request: m.UpdateAvailabilityRequest, context) -> m.UpdateAvailabilityResponse:
        caller = principal.require()
        name = request.availability.name
        if not name.endswith("/availability"):
            raise errors.invalid_argument(
                ("availability.name", "must look like businesses/{id}/services/{id}/availability"))
        hours, closed = domain.check_hours(request.availability)

        async def work(s: AsyncSession, now: dt.datetime) -> m.UpdateAvailabilityResponse:
            service, business = await self._service(s, name.removesuffix("/availability"), "availability.name")
            if not self._owns(caller, business):
                raise errors.permission_denied("only the business's owner may change its hours")
            await store.replace_hours(s, service.id, hours=hours, closed=closed)
            return m.UpdateAvailabilityResponse(availability=await self._availability(s, service, business))
        return await self.once(caller, "UpdateAvailability", request.request_id, m.UpdateAvailabilityResponse, work)

    async def _calendar(self, s: AsyncSession, service: Row, business: Row) -> dict:
        hours, closed = await store.hours_of(s, service.id)
        return dict(hours=hours_of(hours), closed=closed, tz=calendar.zone(business.time_zone),
                    minutes=service.duration_minutes)

    async def ListAvailableSlots(self, request: m.ListAvailableSlotsRequest, context) -> m.ListAvailableSlotsResponse:
        first, last = domain.slot_range(request)
        wanted = request.pets or 1
        now = self.now()
        async with self.db.read() as s:
            service, business = await self._service(s, request.service, "service")
            cal = await self._calendar(s, service, business)
            slots = list(calendar.slot_starts(first=first, last=last, **cal))
            booked = await store.booked_pets(s, service.id, start=slots[0][0], end=slots[-1][1]) if slots else {}
        out = []
        for start, end in slots:
            left = service.capacity - booked.get(start, 0)
            if start > now and left >= wanted:  # slots are whole minutes: whole seconds since the epoch
                out.append(m.Slot(start_time={"seconds": int(start.timestamp())},
                                  end_time={"seconds": int(end.timestamp())}, remaining_capacity=left))
        return m.ListAvailableSlotsResponse(slots=out, time_zone=business.time_zone)

    # --- bookings ---

    async def _check_pets(self, pet_ids: list[str], service: Row, caller: Principal, token: str) -> None:
        """Each pet is the caller's, of a species and size the service takes (asked of the pet service
        with the caller's own token)."""
        stub = pet_pb2_grpc.PetServiceStub(self.pets())
        species, sizes = set(domain.uncsv(service.species)), set(domain.uncsv(service.sizes))
        for i, pet_id in enumerate(pet_ids):
            field = f"booking.pets[{i}]"
            try:
                pet = (await stub.GetPet(pet_pb2.GetPetRequest(name=f"pets/{pet_id}"), timeout=PEER_DEADLINE_SECONDS,
                                         metadata=(("authorization", token),))).pet
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    raise errors.invalid_argument((field, "no such pet")) from None
                log.warning("pet service failed: %s %s", e.code().name, e.details())
                raise errors.ApiError(grpc.StatusCode.UNAVAILABLE, "the pets could not be checked; try again",
                                      "PETS_UNAVAILABLE") from None
            if pet.owner != caller.resource_name:
                raise errors.invalid_argument((field, "is not one of your pets"))
            if species and pet.species not in species:
                raise errors.invalid_argument((field, "this service does not take its species"))
            if sizes and pet.size not in sizes:
                raise errors.invalid_argument((field, "this service does not take its size"))

    async def CreateBooking(self, request: m.CreateBookingRequest, context) -> m.CreateBookingResponse:
        caller = principal.require()
        b = request.booking
        pet_ids = domain.check_booking(b)
        start = b.start_time.ToDatetime(tzinfo=dt.timezone.utc)
        async with self.db.read() as s:
            service, business = await self._service(s, b.service, "booking.service")
        if business.owner_id == caller.user_id:
            raise errors.failed_precondition("a business cannot book its own service", "OWN_BUSINESS")
        await self._check_pets(pet_ids, service, caller, authorization(context))

        async def work(s: AsyncSession, now: dt.datetime) -> m.CreateBookingResponse:
            # Read again under a share lock: an UpdateService or DeleteService committing meanwhile
            # must not leave this booking with the old capacity, price, duration or policy.
            service, business = await self._service(s, b.service, "booking.service", lock="share")
            cal = await self._calendar(s, service, business)
            slot = calendar.is_slot(start, **cal)
            if slot is None:
                raise errors.invalid_argument(("booking.start_time", "is not the start of one of the service's slots"))
            if start <= now:
                raise errors.failed_precondition("the slot has already started", "SLOT_PAST")
            if not await store.take_places(s, service_id=service.id, start=start, capacity=service.capacity,
                                           pets=len(pet_ids)):
                raise errors.failed_precondition("the slot has no room left for these pets", "SLOT_FULL",
                                                 capacity=service.capacity)
            booking_id = new_id()
            await store.add_booking(
                s, id=booking_id, owner_id=caller.user_id, business_id=business.id, business_owner_id=business.owner_id,
                service_id=service.id, pets=",".join(pet_ids), pet_count=len(pet_ids), start_time=start,
                end_time=slot[1], state=B.STATE_REQUESTED, price_minor=service.price_minor * len(pet_ids),
                currency=service.currency, cancellation_policy=service.cancellation_policy,
                time_zone=business.time_zone, payment_method=b.payment_method, payment_status=B.PAYMENT_STATUS_NONE,
                note=b.note, expire_time=min(now + self.request_ttl, start), create_time=now, update_time=now)
            booking = booking_message(await store.get_booking(s, booking_id))
            await emit(s, ev.BookingRequested(booking=booking))
            return m.CreateBookingResponse(booking=booking)
        return await self.once(caller, "CreateBooking", request.request_id, m.CreateBookingResponse, work)

    async def _booking(self, s: AsyncSession, name: str, caller: Principal, *, lock: bool = False,
                       field: str = "name") -> Row:
        (booking_id,) = parse_name(name, "bookings/{}", field)
        row = await store.find_booking(s, booking_id, lock=lock)
        if row is None or not (caller.is_admin or caller.user_id in (row.owner_id, row.business_owner_id)):
            raise errors.not_found(BOOKING_TYPE, name)  # others' bookings do not exist for them
        return row

    async def GetBooking(self, request: m.GetBookingRequest, context) -> m.GetBookingResponse:
        caller = principal.require()
        async with self.db.read() as s:
            return m.GetBookingResponse(booking=booking_message(await self._booking(s, request.name, caller)))

    async def ListBookings(self, request: m.ListBookingsRequest, context) -> m.ListBookingsResponse:
        caller = principal.require()
        if any(v == 0 or v not in B.State.values() for v in request.states):
            raise errors.invalid_argument(("states", "must hold only defined, specified states"))
        size = page_size(request.page_size)
        position = decode_page_token(request.page_token, request)
        after = (dt.datetime.fromisoformat(position[0]), position[1]) if position else None
        async with self.db.read() as s:
            business_id = None
            every = request.business == "businesses/-"  # AIP-159: the bookings of all the caller's businesses
            if request.business and not every:
                business = await self._business(s, request.business, "business")
                if not self._owns(caller, business):
                    raise errors.permission_denied("only the business's owner may list its bookings")
                business_id = business.id
            rows = await store.list_bookings(s, owner_id=None if business_id or every else caller.user_id,
                                             business_id=business_id, states=list(request.states), after=after,
                                             size=size, business_owner_id=caller.user_id if every else None)
        rows, token = pagination.page(rows, size, lambda r: [r.create_time.isoformat(), r.id], request)
        return m.ListBookingsResponse(bookings=[booking_message(r) for r in rows], next_page_token=token)

    async def _transition(self, method: str, request, response_type: type[M],
                          step: Callable[[AsyncSession, Row, Principal, dt.datetime], Awaitable[None]]) -> M:
        caller = principal.require()

        async def work(s: AsyncSession, now: dt.datetime) -> M:
            row = await self._booking(s, request.name, caller, lock=True)
            await step(s, row, caller, now)
            return response_type(booking=booking_message(await store.get_booking(s, row.id)))
        return await self.once(caller, method, request.request_id, response_type, work)

    @staticmethod
    def _business_side(row: Row, caller: Principal) -> None:
        if caller.user_id != row.business_owner_id:
            raise errors.permission_denied("only the business may do this", "BUSINESS_ONLY")

    @staticmethod
    def _wrong_state(row: Row, action: str) -> errors.ApiError:
        return errors.failed_precondition(f"a {B.State.Name(row.state).removeprefix('STATE_').lower()} booking "
                                          f"cannot be {action}", "BOOKING_STATE", state=B.State.Name(row.state))

    async def _business_payout_account(self, s: AsyncSession, row: Row) -> str:
        business = await store.find_business(s, row.business_id)
        return business.payout_account if business is not None else ""

    async def AcceptBooking(self, request: m.AcceptBookingRequest, context) -> m.AcceptBookingResponse:
        async def step(s: AsyncSession, row: Row, caller: Principal, now: dt.datetime) -> None:
            self._business_side(row, caller)
            if row.state == B.STATE_ACCEPTED:
                return
            if row.state != B.STATE_REQUESTED:
                raise self._wrong_state(row, "accepted")
            if now >= row.expire_time:
                raise errors.failed_precondition("the request has expired", "BOOKING_EXPIRED")
            await store.update_booking(s, row.id, state=B.STATE_ACCEPTED, payment_status=B.PAYMENT_STATUS_PENDING,
                                       update_time=now)
            accepted = booking_message(await store.get_booking(s, row.id))
            await emit(s, ev.BookingAccepted(booking=accepted, payment_method=row.payment_method,
                                             payout_account=await self._business_payout_account(s, row)))
        return await self._transition("AcceptBooking", request, m.AcceptBookingResponse, step)

    async def DeclineBooking(self, request: m.DeclineBookingRequest, context) -> m.DeclineBookingResponse:
        async def step(s: AsyncSession, row: Row, caller: Principal, now: dt.datetime) -> None:
            self._business_side(row, caller)
            if row.state == B.STATE_DECLINED:
                return
            if row.state != B.STATE_REQUESTED:
                raise self._wrong_state(row, "declined")
            await store.free_places(s, service_id=row.service_id, start=row.start_time, pets=row.pet_count)
            await store.update_booking(s, row.id, state=B.STATE_DECLINED, update_time=now)
            await emit(s, ev.BookingDeclined(booking=booking_message(await store.get_booking(s, row.id))))
        return await self._transition("DeclineBooking", request, m.DeclineBookingResponse, step)

    async def StartBooking(self, request: m.StartBookingRequest, context) -> m.StartBookingResponse:
        async def step(s: AsyncSession, row: Row, caller: Principal, now: dt.datetime) -> None:
            self._business_side(row, caller)
            if row.state == B.STATE_IN_PROGRESS:
                return
            if row.state != B.STATE_ACCEPTED:
                raise self._wrong_state(row, "started")
            if row.payment_status != B.PAYMENT_STATUS_PAID:
                raise errors.failed_precondition("the booking is not paid yet", "NOT_PAID",
                                                 payment_status=B.PaymentStatus.Name(row.payment_status))
            await store.update_booking(s, row.id, state=B.STATE_IN_PROGRESS, update_time=now)
        return await self._transition("StartBooking", request, m.StartBookingResponse, step)

    async def CompleteBooking(self, request: m.CompleteBookingRequest, context) -> m.CompleteBookingResponse:
        async def step(s: AsyncSession, row: Row, caller: Principal, now: dt.datetime) -> None:
            self._business_side(row, caller)
            if row.state == B.STATE_COMPLETED:
                return
            if row.state != B.STATE_IN_PROGRESS:
                raise self._wrong_state(row, "completed")
            await store.update_booking(s, row.id, state=B.STATE_COMPLETED, update_time=now,
                                       review_deadline=now + reviews.REVIEW_WINDOW)
            await emit(s, ev.BookingCompleted(booking=booking_message(await store.get_booking(s, row.id)),
                                              payout_account=await self._business_payout_account(s, row)))
        return await self._transition("CompleteBooking", request, m.CompleteBookingResponse, step)

    async def CancelBooking(self, request: m.CancelBookingRequest, context) -> m.CancelBookingResponse:
        async def step(s: AsyncSession, row: Row, caller: Principal, now: dt.datetime) -> None:
            if row.state == B.STATE_CANCELLED:
                return
            if row.state not in OPEN:
                raise self._wrong_state(row, "cancelled")
            by_business = caller.user_id == row.business_owner_id
            if not by_business and caller.user_id != row.owner_id:
                raise errors.permission_denied("only the booking's parties may cancel it")
            await self._cancel(s, row, by_business=by_business, now=now)
        return await self._transition("CancelBooking", request, m.CancelBookingResponse, step)

    async def _cancel(self, s: AsyncSession, row: Row, *, by_business: bool, now: dt.datetime) -> None:
        """Cancels a locked open booking with its policy's refund (all of it when the business cancels)."""
        charged = row.payment_status in (B.PAYMENT_STATUS_PENDING, B.PAYMENT_STATUS_REQUIRES_ACTION,
                                         B.PAYMENT_STATUS_PAID)
        refund = policy.refund(row.cancellation_policy, paid=row.price_minor, start=row.start_time, now=now,
                               tz=calendar.zone(row.time_zone), by_business=by_business) if charged else 0
        await store.free_places(s, service_id=row.service_id, start=row.start_time, pets=row.pet_count)
        await store.update_booking(s, row.id, state=B.STATE_CANCELLED, update_time=now,
                                   cancelled_by=B.CANCELLER_BUSINESS if by_business else B.CANCELLER_OWNER)
        await emit(s, ev.BookingCancelled(booking=booking_message(await store.get_booking(s, row.id)),
                                          refund=from_minor(refund, row.currency),
                                          payout_account=await self._business_payout_account(s, row)))

    # --- reviews ---

    async def CreateBookingReview(self, request: m.CreateBookingReviewRequest,
                                  context) -> m.CreateBookingReviewResponse:
        caller = principal.require()
        reviews.check(request.review)

        async def work(s: AsyncSession, now: dt.datetime) -> m.CreateBookingReviewResponse:
            row = await self._booking(s, request.parent, caller, lock=True, field="parent")
            side = reviews.side_of(row, caller)
            if row.state != B.STATE_COMPLETED or row.review_deadline is None:
                raise self._wrong_state(row, "reviewed")
            if now > row.review_deadline:
                raise errors.failed_precondition("the 21 days to review this booking are over", "REVIEW_WINDOW_CLOSED")
            if any(r.side == side for r in await store.reviews_of(s, row.id)):
                raise errors.already_exists(REVIEW_TYPE, f"{request.parent}/reviews/{side}",
                                            "you have reviewed this booking already")
            await store.add_review(s, booking_id=row.id, side=side, author_id=caller.user_id,
                                   subject=reviews.subject_of(row, side), rating=request.review.rating,
                                   text=request.review.text.strip(), review_deadline=row.review_deadline,
                                   create_time=now)
            written = await store.reviews_of(s, row.id)
            if len(written) == len(reviews.SIDES):  # both have written: both are published now
                await reviews.publish(s, row, written, now, booking_message(row))
            return m.CreateBookingReviewResponse(review=reviews.message(await store.get_review(s, row.id, side)))
        return await self.once(caller, "CreateBookingReview", request.request_id, m.CreateBookingReviewResponse, work)

    async def ListBookingReviews(self, request: m.ListBookingReviewsRequest, context) -> m.ListBookingReviewsResponse:
        caller = principal.require()
        async with self.db.read() as s:
            row = await self._booking(s, request.parent, caller, field="parent")
            rows = await store.reviews_of(s, row.id)
        side = None if caller.user_id not in (row.owner_id, row.business_owner_id) else reviews.side_of(row, caller)
        return m.ListBookingReviewsResponse(reviews=[reviews.message(r) for r in rows if reviews.visible(r, side)])
