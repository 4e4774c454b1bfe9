"""Changing and withdrawing services (AIP-134 update masks, owner only, what bookings already made
keep) and business photos through the blob port (content checked as pet photos are)."""
from __future__ import annotations

import grpc
from google.protobuf import field_mask_pb2
import pytest

from petplatform.marketplace.v1 import marketplace_pb2 as m
from tests.support.errors import expect, violations
from tests.support.market import B, a_slot, book, booking, business, eur, owner_with_dog, slots
from tests.support.pets import image
from tests.support.platform import Api

CODE = grpc.StatusCode


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def update(api: Api, who, service: m.Service, *paths: str, request_id: str = "") -> m.Service:
    return (await api.marketplace.UpdateService(m.UpdateServiceRequest(
        service=service, update_mask=mask(*paths), request_id=request_id), metadata=who.md)).service


async def test_a_new_price_and_policy_apply_to_new_bookings_only(market: Api):
    api = market
    seller = await api.signup("Groomer")
    _, svc = await business(api, seller, kind=m.SERVICE_KIND_GROOMING, capacity=2, price=3000,
                            policy=m.CANCELLATION_POLICY_FLEXIBLE)
    owner, pet = await owner_with_dog(api)
    slot = await a_slot(api, svc.name)
    before = await book(api, owner, svc.name, slot.start_time, [pet])

    changed = await update(api, seller, m.Service(name=svc.name, price=eur(4500), display_name="Full groom",
                                                  cancellation_policy=m.CANCELLATION_POLICY_STRICT),
                           "price", "cancellation_policy", "display_name")
    assert (changed.price, changed.cancellation_policy, changed.display_name) == (
        eur(4500), m.CANCELLATION_POLICY_STRICT, "Full groom")
    assert changed.capacity == 2 and changed.duration_minutes == 60  # outside the mask: untouched
    assert changed.update_time.ToDatetime() >= changed.create_time.ToDatetime()
    assert (await api.marketplace.GetService(m.GetServiceRequest(name=svc.name))).service == changed

    kept = await booking(api, owner, before.name)
    assert (kept.price, kept.cancellation_policy) == (eur(3000), m.CANCELLATION_POLICY_FLEXIBLE)
    other, pet2 = await owner_with_dog(api, "Second")
    after = await book(api, other, svc.name, slot.start_time, [pet2])
    assert (after.price, after.cancellation_policy) == (eur(4500), m.CANCELLATION_POLICY_STRICT)

    # Walks stay flexible whatever is asked; a change of kind to walking makes the policy flexible.
    walk = await update(api, seller, m.Service(name=svc.name, kind=m.SERVICE_KIND_WALKING), "kind")
    assert (walk.kind, walk.cancellation_policy) == (m.SERVICE_KIND_WALKING, m.CANCELLATION_POLICY_FLEXIBLE)
    walk = await update(api, seller, m.Service(name=svc.name, cancellation_policy=m.CANCELLATION_POLICY_STRICT),
                        "cancellation_policy")
    assert walk.cancellation_policy == m.CANCELLATION_POLICY_FLEXIBLE
    # Retried with its request id, an update answers what it answered first.
    first = await update(api, seller, m.Service(name=svc.name, display_name="Once"), "display_name",
                         request_id="rename-1")
    again = await update(api, seller, m.Service(name=svc.name, display_name="Twice"), "display_name",
                         request_id="rename-1")
    assert first == again and again.display_name == "Once"


async def test_capacity_and_duration_changes_respect_bookings_already_made(market: Api):
    api = market
    seller = await api.signup("Sitter")
    _, svc = await business(api, seller, kind=m.SERVICE_KIND_SITTING, capacity=2)
    owner, pet = await owner_with_dog(api)
    other, pet2 = await owner_with_dog(api, "Other")
    slot = await a_slot(api, svc.name)
    day = slot.start_time.ToDatetime().date()
    b1 = await book(api, owner, svc.name, slot.start_time, [pet])
    await book(api, other, svc.name, slot.start_time, [pet2])

    # Two pets are booked into the slot: one place is too few, and nothing changes.
    await expect(CODE.FAILED_PRECONDITION, update(api, seller, m.Service(name=svc.name, capacity=1), "capacity"),
                 "CAPACITY_BELOW_BOOKINGS")
    # More places open the full slot again, for new requests.
    bigger = await update(api, seller, m.Service(name=svc.name, capacity=3), "capacity")
    assert bigger.capacity == 3
    free = {s.start_time.ToDatetime(): s.remaining_capacity for s in await slots(api, svc.name, day, day)}
    assert free[slot.start_time.ToDatetime()] == 1
    third, pet3 = await owner_with_dog(api, "Third")
    await book(api, third, svc.name, slot.start_time, [pet3])

    # The slots cannot change length under open bookings.
    await expect(CODE.FAILED_PRECONDITION, update(api, seller, m.Service(name=svc.name, duration_minutes=30),
                                                  "duration_minutes"), "SERVICE_HAS_OPEN_BOOKINGS")
    await expect(CODE.FAILED_PRECONDITION, api.marketplace.DeleteService(m.DeleteServiceRequest(name=svc.name),
                                                                         metadata=seller.md),
                 "SERVICE_HAS_OPEN_BOOKINGS")
    for b in [b1, *[x for x in (await api.marketplace.ListBookings(m.ListBookingsRequest(
            business=svc.name.split("/services/")[0]), metadata=seller.md)).bookings if x.name != b1.name]]:
        await api.marketplace.DeclineBooking(m.DeclineBookingRequest(name=b.name), metadata=seller.md)
    shorter = await update(api, seller, m.Service(name=svc.name, duration_minutes=30), "duration_minutes")
    assert shorter.duration_minutes == 30
    halves = await slots(api, svc.name, day, day)
    assert len(halves) == 16 and all(s.remaining_capacity == 3 for s in halves)
    assert (await booking(api, owner, b1.name)).state == B.STATE_DECLINED


async def test_a_withdrawn_service_is_gone_for_new_business_and_kept_for_its_bookings(market: Api):
    api = market
    seller = await api.signup("Trainer")
    biz, svc = await business(api, seller, kind=m.SERVICE_KIND_TRAINING)
    owner, pet = await owner_with_dog(api)
    slot = await a_slot(api, svc.name)
    b = await book(api, owner, svc.name, slot.start_time, [pet])
    await api.marketplace.DeclineBooking(m.DeclineBookingRequest(name=b.name), metadata=seller.md)

    await api.marketplace.DeleteService(m.DeleteServiceRequest(name=svc.name, request_id="withdraw"),
                                        metadata=seller.md)
    await api.marketplace.DeleteService(m.DeleteServiceRequest(name=svc.name, request_id="withdraw"),
                                        metadata=seller.md)  # a retry: the same answer
    await expect(CODE.NOT_FOUND, api.marketplace.GetService(m.GetServiceRequest(name=svc.name)))
    await expect(CODE.NOT_FOUND, api.marketplace.DeleteService(m.DeleteServiceRequest(name=svc.name),
                                                               metadata=seller.md))
    listed = (await api.marketplace.ListServices(m.ListServicesRequest(parent=biz.name))).services
    assert svc.name not in [x.name for x in listed]
    assert m.SERVICE_KIND_TRAINING not in (await api.marketplace.GetBusiness(
        m.GetBusinessRequest(name=biz.name))).business.kinds
    await expect(CODE.NOT_FOUND, book(api, owner, svc.name, slot.start_time, [pet]))
    await expect(CODE.NOT_FOUND, update(api, seller, m.Service(name=svc.name, capacity=3), "capacity"))
    assert (await booking(api, owner, b.name)).service == svc.name  # the history stays


async def test_only_the_owner_changes_a_service_and_bad_masks_are_refused(market: Api):
    api = market
    seller = await api.signup("Vet")
    _, svc = await business(api, seller, kind=m.SERVICE_KIND_VET_VISIT)
    stranger = await api.signup("Stranger")
    await expect(CODE.PERMISSION_DENIED, update(api, stranger, m.Service(name=svc.name, capacity=3), "capacity"))
    await expect(CODE.PERMISSION_DENIED, api.marketplace.DeleteService(m.DeleteServiceRequest(name=svc.name),
                                                                       metadata=stranger.md))
    await expect(CODE.UNAUTHENTICATED, api.marketplace.UpdateService(m.UpdateServiceRequest(
        service=m.Service(name=svc.name, capacity=3), update_mask=mask("capacity"))))
    # An admin may.
    assert (await update(api, api.admin, m.Service(name=svc.name, capacity=4), "capacity")).capacity == 4

    for paths, field in [((), "update_mask"), (("create_time",), "update_mask.paths"),
                         (("name",), "update_mask.paths"), (("nonsense",), "update_mask.paths"),
                         (("*", "price"), "update_mask")]:
        err = await expect(CODE.INVALID_ARGUMENT, update(api, seller, m.Service(name=svc.name), *paths))
        assert field in violations(err), (paths, violations(err))
    for service, path in [(m.Service(name=svc.name, capacity=0), "capacity"),
                          (m.Service(name=svc.name, capacity=51), "capacity"),
                          (m.Service(name=svc.name, duration_minutes=5), "duration_minutes"),
                          (m.Service(name=svc.name, price=eur(0)), "price"),
                          (m.Service(name=svc.name, kind=99), "kind"),
                          (m.Service(name=svc.name, species=[0]), "species"),
                          (m.Service(name=svc.name, cancellation_policy=42), "cancellation_policy"),
                          (m.Service(name=svc.name, display_name=" "), "display_name")]:
        err = await expect(CODE.INVALID_ARGUMENT, update(api, seller, service, path))
        assert f"service.{path}" in violations(err), (path, violations(err))
    # `*` sets every writable field: an empty service is refused field by field, not written.
    err = await expect(CODE.INVALID_ARGUMENT, update(api, seller, m.Service(name=svc.name), "*"))
    assert {"service.capacity", "service.price", "service.kind"} <= set(violations(err))
    for name in ("", "services/x", f"{svc.name}/extra", "businesses/nope/services/nope"):
        await expect(CODE.INVALID_ARGUMENT, update(api, seller, m.Service(name=name, capacity=2), "capacity"))
    await expect(CODE.NOT_FOUND, update(api, seller, m.Service(name=f"businesses/{'a' * 32}/services/{'b' * 32}",
                                                               capacity=2), "capacity"))
    # Another business's service under this business's name does not exist.
    other_biz, _ = await business(api, stranger)
    await expect(CODE.NOT_FOUND, update(api, seller, m.Service(
        name=f"{other_biz.name}/services/{svc.name.rsplit('/', 1)[1]}", capacity=2), "capacity"))


# --- photos ---

async def test_business_photos_are_stored_listed_and_removed(market: Api):
    api = market
    seller = await api.signup("Photogenic")
    biz, _ = await business(api, seller)
    photo = (await api.marketplace.UploadBusinessPhoto(m.UploadBusinessPhotoRequest(
        parent=biz.name, content=image("JPEG", (80, 60))), metadata=seller.md)).photo
    assert photo.name.startswith(f"{biz.name}/photos/")
    assert (photo.content_type, photo.width, photo.height) == ("image/jpeg", 80, 60) and photo.uri
    png = (await api.marketplace.UploadBusinessPhoto(m.UploadBusinessPhotoRequest(
        parent=biz.name, content=image("PNG")), metadata=seller.md)).photo
    got = (await api.marketplace.GetBusiness(m.GetBusinessRequest(name=biz.name))).business
    assert [p.name for p in got.photos] == [photo.name, png.name]
    data, content_type = await api.platform.rt.blobs.get(photo.name)
    assert content_type == "image/jpeg" and data[:2] == b"\xff\xd8"

    stranger = await api.signup("Stranger")
    await expect(CODE.PERMISSION_DENIED, api.marketplace.UploadBusinessPhoto(m.UploadBusinessPhotoRequest(
        parent=biz.name, content=image("PNG")), metadata=stranger.md))
    await expect(CODE.PERMISSION_DENIED, api.marketplace.DeleteBusinessPhoto(m.DeleteBusinessPhotoRequest(
        name=photo.name), metadata=stranger.md))
    await api.marketplace.DeleteBusinessPhoto(m.DeleteBusinessPhotoRequest(name=photo.name), metadata=seller.md)
    await expect(CODE.NOT_FOUND, api.marketplace.DeleteBusinessPhoto(m.DeleteBusinessPhotoRequest(
        name=photo.name), metadata=seller.md))
    got = (await api.marketplace.GetBusiness(m.GetBusinessRequest(name=biz.name))).business
    assert [p.name for p in got.photos] == [png.name]
    from mesh.blobs import BlobNotFound
    with pytest.raises(BlobNotFound):
        await api.platform.rt.blobs.get(photo.name)
    for name in ("", "businesses/x", f"{biz.name}/photos", "pets/x/photos/y"):
        await expect(CODE.INVALID_ARGUMENT, api.marketplace.DeleteBusinessPhoto(
            m.DeleteBusinessPhotoRequest(name=name), metadata=seller.md))


async def test_photo_uploads_and_deletes_with_a_request_id_happen_once(market: Api):
    import asyncio
    api = market
    seller = await api.signup("Retrier")
    biz, _ = await business(api, seller)

    async def upload():
        return (await api.marketplace.UploadBusinessPhoto(m.UploadBusinessPhotoRequest(
            parent=biz.name, content=image("PNG"), request_id="photo-1"), metadata=seller.md)).photo
    # A retry, and retries racing each other: one photo, one answer.
    first = await upload()
    answers = await asyncio.gather(*(upload() for _ in range(4)))
    assert all(a == first for a in answers)
    got = (await api.marketplace.GetBusiness(m.GetBusinessRequest(name=biz.name))).business
    assert [p.name for p in got.photos] == [first.name]
    # The same request id from someone else is theirs, not this answer.
    stranger = await api.signup("Stranger")
    await expect(CODE.PERMISSION_DENIED, api.marketplace.UploadBusinessPhoto(m.UploadBusinessPhotoRequest(
        parent=biz.name, content=image("PNG"), request_id="photo-1"), metadata=stranger.md))
    await expect(CODE.INVALID_ARGUMENT, api.marketplace.UploadBusinessPhoto(m.UploadBusinessPhotoRequest(
        parent=biz.name, content=image("PNG"), request_id="x" * 200), metadata=seller.md))

    async def delete():
        await api.marketplace.DeleteBusinessPhoto(m.DeleteBusinessPhotoRequest(
            name=first.name, request_id="delete-1"), metadata=seller.md)
    await delete()
    await delete()  # a retry: the first answer, not NOT_FOUND
    got = (await api.marketplace.GetBusiness(m.GetBusinessRequest(name=biz.name))).business
    assert not got.photos


@pytest.mark.parametrize("content, reason", [
    (b"", "MISSING_FIELD"),
    (b"GIF89a" + b"\x00" * 100, "PHOTO_INVALID"),
    (b"just some text that claims to be a jpeg", "PHOTO_INVALID"),
    (image("PNG")[:-40], "PHOTO_INVALID"),
    (image("JPEG", (64, 64))[:200], "PHOTO_INVALID"),
    (image("BMP"), "PHOTO_TYPE"),
    (b"\x89PNG" + b"\x00" * (6 * 1024 * 1024), "PHOTO_TOO_LARGE"),
])
async def test_bad_photo_content_is_refused_and_nothing_is_stored(market: Api, content, reason):
    api = market
    seller = await api.signup("Careful")
    biz, _ = await business(api, seller)
    err = await expect(CODE.INVALID_ARGUMENT, api.marketplace.UploadBusinessPhoto(m.UploadBusinessPhotoRequest(
        parent=biz.name, content=content), metadata=seller.md), reason)
    assert "content" in violations(err)
    assert not (await api.marketplace.GetBusiness(m.GetBusinessRequest(name=biz.name))).business.photos


async def test_a_business_holds_at_most_twenty_photos(market: Api):
    import asyncio
    api = market
    seller = await api.signup("Gallery")
    biz, _ = await business(api, seller)
    small = image("PNG", (8, 8))
    results = await asyncio.gather(*(api.marketplace.UploadBusinessPhoto(m.UploadBusinessPhotoRequest(
        parent=biz.name, content=small), metadata=seller.md) for _ in range(24)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(results) - len(refused) == 20
    assert all(r.code() == CODE.FAILED_PRECONDITION for r in refused)
    assert len((await api.marketplace.GetBusiness(m.GetBusinessRequest(name=biz.name))).business.photos) == 20


async def test_a_business_moves_to_another_time_zone_only_without_open_bookings(market: Api):
    api = market
    seller = await api.signup("Mover")
    biz, svc = await business(api, seller)
    owner, pet = await owner_with_dog(api)
    b = await book(api, owner, svc.name, (await a_slot(api, svc.name)).start_time, [pet])

    async def move(zone: str):
        return await api.marketplace.UpdateBusiness(m.UpdateBusinessRequest(
            business=m.Business(name=biz.name, time_zone=zone), update_mask=mask("time_zone")), metadata=seller.md)
    await expect(CODE.FAILED_PRECONDITION, move("Asia/Tokyo"), "BUSINESS_HAS_OPEN_BOOKINGS")
    assert (await move("Europe/Berlin")).business.time_zone == "Europe/Berlin"  # the same zone: no move
    await api.marketplace.CancelBooking(m.CancelBookingRequest(name=b.name), metadata=owner.md)
    assert (await move("Asia/Tokyo")).business.time_zone == "Asia/Tokyo"
    kept = await booking(api, owner, b.name)
    assert kept.time_zone == "Europe/Berlin"  # the zone its cut-offs were in
