"""PetService through its public gRPC API: CRUD, ownership, search, paging, photos, health records."""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
import io
import random
import struct
import threading
import uuid
import zlib

from google.protobuf import field_mask_pb2
from google.type import date_pb2, latlng_pb2
import grpc
from PIL import Image
import pytest
import sqlalchemy as sa

from mesh import media
from mesh.events.outbox import outbox
from petplatform.common.v1 import animal_pb2, event_pb2
from petplatform.pet.v1 import events_pb2 as pet_events
from petplatform.pet.v1 import pet_pb2
from services.pet import domain
from tests.support.errors import error_reason, expect, violations
from tests.support.pets import TOKYO, create, dog, image, years_ago
from tests.support.platform import Api, embedded_settings, module_of, start_platform

YOKOHAMA = latlng_pb2.LatLng(latitude=35.4437, longitude=139.6380)  # ~27 km from Tokyo station
OSAKA = latlng_pb2.LatLng(latitude=34.6937, longitude=135.5023)  # ~400 km


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, rows: int, chunks: bytes = b"") -> bytes:
    """A grey PNG whose header says width×height, carrying `rows` rows of pixels: it may lie."""
    pixels = zlib.compress(b"".join(b"\0" + bytes(width) for _ in range(rows)))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunks
            + png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b""))


@functools.cache
def just_past_the_cap(fmt: str) -> bytes:
    """A real, small file of 4097×4096 pixels: one column more than accepted."""
    buf = io.BytesIO()
    Image.new("L", (4097, 4096), 128).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
async def users(api: Api):
    return await api.signup("Owner"), await api.signup("Stranger")


async def test_create_get_update_delete(api: Api, users):
    owner, _ = users
    pet = await create(api, owner, dog(breed=" Shiba Inu ", sex=pet_pb2.Pet.SEX_FEMALE, size=animal_pb2.PET_SIZE_SMALL,
                                       birth_date=years_ago(2, 3), location=TOKYO, good_with_children=True,
                                       description="Loves walks"))
    assert pet.name.startswith("pets/") and pet.owner == owner.name and pet.breed == "Shiba Inu"
    assert pet.status == pet_pb2.Pet.STATUS_AVAILABLE and pet.age_months == 27
    got = (await api.pet.GetPet(pet_pb2.GetPetRequest(name=pet.name))).pet  # public: no token needed
    assert got == pet
    updated = (await api.pet.UpdatePet(pet_pb2.UpdatePetRequest(
        pet=pet_pb2.Pet(name=pet.name, status=pet_pb2.Pet.STATUS_PENDING, display_name="ignored"),
        update_mask=field_mask_pb2.FieldMask(paths=["status"])), metadata=owner.md)).pet
    assert updated.status == pet_pb2.Pet.STATUS_PENDING and updated.display_name == "Mochi"
    assert updated.update_time.ToDatetime() >= pet.update_time.ToDatetime()
    await api.pet.DeletePet(pet_pb2.DeletePetRequest(name=pet.name), metadata=owner.md)
    await expect(grpc.StatusCode.NOT_FOUND, api.pet.GetPet(pet_pb2.GetPetRequest(name=pet.name)))


async def test_others_cannot_change_a_pet(api: Api, users):
    owner, stranger = users
    pet = await create(api, owner, dog("Guarded"))
    calls = [
        api.pet.UpdatePet(pet_pb2.UpdatePetRequest(pet=pet_pb2.Pet(name=pet.name, display_name="Stolen"),
                                                   update_mask=field_mask_pb2.FieldMask(paths=["display_name"])),
                          metadata=stranger.md),
        api.pet.DeletePet(pet_pb2.DeletePetRequest(name=pet.name), metadata=stranger.md),
        api.pet.UploadPetPhoto(pet_pb2.UploadPetPhotoRequest(parent=pet.name, content=image("PNG")),
                               metadata=stranger.md),
        api.pet.CreateHealthRecord(pet_pb2.CreateHealthRecordRequest(
            parent=pet.name, health_record=pet_pb2.HealthRecord(
                kind=pet_pb2.HealthRecord.KIND_CHECKUP, title="Fake", date=years_ago(0))), metadata=stranger.md),
    ]
    for call in calls:
        await expect(grpc.StatusCode.PERMISSION_DENIED, call, "NOT_OWNER")
    assert (await api.pet.GetPet(pet_pb2.GetPetRequest(name=pet.name))).pet == pet
    # Without a token: UNAUTHENTICATED, before anything is looked at.
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.pet.DeletePet(pet_pb2.DeletePetRequest(name=pet.name)))
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.pet.CreatePet(pet_pb2.CreatePetRequest(pet=dog())))


@pytest.mark.parametrize("pet, field", [
    (pet_pb2.Pet(species=animal_pb2.SPECIES_CAT), "pet.display_name"),
    (pet_pb2.Pet(display_name="x" * 65, species=animal_pb2.SPECIES_CAT), "pet.display_name"),
    (pet_pb2.Pet(display_name="Nameless species"), "pet.species"),
    (pet_pb2.Pet(display_name="Odd", species=42), "pet.species"),
    (dog(breed="b" * 65), "pet.breed"),
    (dog(description="d" * 5001), "pet.description"),
    (dog(sex=7), "pet.sex"),
    (dog(listing=9), "pet.listing"),
    (dog(energy=9), "pet.energy"),
    (dog(birth_date=date_pb2.Date(year=2020, month=13, day=1)), "pet.birth_date"),
    (dog(birth_date=date_pb2.Date(year=dt.date.today().year + 1, month=1, day=1)), "pet.birth_date"),
    (dog(location=latlng_pb2.LatLng(latitude=-91, longitude=0)), "pet.location.latitude"),
    (dog(location=latlng_pb2.LatLng(latitude=0, longitude=181)), "pet.location.longitude"),
])
async def test_invalid_pets_name_the_field(api: Api, users, pet, field):
    owner, _ = users
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.pet.CreatePet(pet_pb2.CreatePetRequest(pet=pet),
                                                                           metadata=owner.md))
    assert field in violations(err)


async def test_listing_defaults_to_adoption_and_filters_listings(api: Api, users):
    owner, _ = users
    plain = await create(api, owner, dog("Unsaid"))
    assert plain.listing == pet_pb2.Pet.LISTING_ADOPTION and plain.energy == animal_pb2.ENERGY_LEVEL_UNSPECIFIED
    player = await create(api, owner, dog("Player", listing=pet_pb2.Pet.LISTING_PLAYDATES,
                                          energy=animal_pb2.ENERGY_LEVEL_HIGH))
    assert player.listing == pet_pb2.Pet.LISTING_PLAYDATES and player.energy == animal_pb2.ENERGY_LEVEL_HIGH
    assert (await api.pet.GetPet(pet_pb2.GetPetRequest(name=player.name))).pet == player

    async def listed(*listings) -> set[str]:
        found = await api.pet.ListPets(pet_pb2.ListPetsRequest(owner=owner.name, listings=listings, page_size=100))
        return {p.name for p in found.pets} & {plain.name, player.name}
    assert await listed() == {plain.name, player.name}
    assert await listed(pet_pb2.Pet.LISTING_PLAYDATES) == {player.name}
    assert await listed(pet_pb2.Pet.LISTING_ADOPTION) == await listed(pet_pb2.Pet.LISTING_UNSPECIFIED) == {plain.name}
    # Set back to unspecified, a listing reads as adoption again.
    updated = (await api.pet.UpdatePet(pet_pb2.UpdatePetRequest(
        pet=pet_pb2.Pet(name=player.name), update_mask=field_mask_pb2.FieldMask(paths=["listing", "energy"])),
        metadata=owner.md)).pet
    assert updated.listing == pet_pb2.Pet.LISTING_ADOPTION and updated.energy == 0


async def test_bad_names_masks_and_missing_pet(api: Api, users):
    owner, _ = users
    for name in ("pets/123", "pet/abc", "", "pets/" + "A" * 32):
        await expect(grpc.StatusCode.INVALID_ARGUMENT, api.pet.GetPet(pet_pb2.GetPetRequest(name=name)))
    await expect(grpc.StatusCode.NOT_FOUND, api.pet.GetPet(pet_pb2.GetPetRequest(name="pets/" + "0" * 32)))
    pet = await create(api, owner, dog("Masked"))
    for paths in (["owner"], ["photos"], []):
        err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.pet.UpdatePet(pet_pb2.UpdatePetRequest(
            pet=pet_pb2.Pet(name=pet.name), update_mask=field_mask_pb2.FieldMask(paths=paths)), metadata=owner.md))
        assert any(k.startswith("update_mask") for k in violations(err))
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.pet.UpdatePet(pet_pb2.UpdatePetRequest(
        pet=pet_pb2.Pet(name=pet.name), update_mask=field_mask_pb2.FieldMask(paths=["display_name"])),
        metadata=owner.md))
    assert "pet.display_name" in violations(err)


async def test_request_id_makes_create_idempotent(api: Api, users):
    owner, stranger = users
    first = await create(api, owner, dog("Once"), request_id="req-1")
    again = await create(api, owner, dog("Twice"), request_id="req-1")
    assert again.name == first.name and again.display_name == "Once"
    assert (await create(api, stranger, dog("Theirs"), request_id="req-1")).name != first.name


async def test_pet_created_is_published(api: Api, users):
    owner, _ = users
    seen: list[event_pb2.EventEnvelope] = []

    async def collect(body: bytes) -> None:
        seen.append(event_pb2.EventEnvelope.FromString(body))

    await api.platform.rt.bus.subscribe("test.pet-created", ["pet.created"], collect)
    pet = await create(api, owner, dog("Announced"))
    for _ in range(100):
        if any(pet.name.encode() in e.payload.value for e in seen):
            break
        await asyncio.sleep(0.02)
    event = next(e for e in seen if pet.name.encode() in e.payload.value)
    payload = pet_events.PetCreated()
    assert event.payload.Unpack(payload) and payload.pet == pet and event.source == "pet"
    pet_db = module_of(api, "pet").db
    for _ in range(250):  # the relay marks the row once the broker confirmed, which may be after delivery
        async with pet_db.transaction() as s:
            if await s.scalar(sa.select(outbox.c.publish_time).where(outbox.c.event_id == event.id)) is not None:
                break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the published event was never marked as published")


@pytest.fixture(scope="module")
async def catalogue(api: Api):
    """A fresh owner's pets, so searches can filter by that owner and know exactly what to expect."""
    owner = await api.signup("Shelter")
    specs = [
        ("Rex", animal_pb2.SPECIES_DOG, "Beagle", pet_pb2.Pet.SEX_MALE, animal_pb2.PET_SIZE_MEDIUM, 1, TOKYO,
         dict(good_with_children=True, good_with_dogs=True), "Playful hound, 100% cuddly"),
        ("Luna", animal_pb2.SPECIES_CAT, "Siamese", pet_pb2.Pet.SEX_FEMALE, animal_pb2.PET_SIZE_SMALL, 3, YOKOHAMA,
         dict(good_with_cats=True), "Quiet lap cat"),
        ("Taro", animal_pb2.SPECIES_DOG, "Shiba Inu", pet_pb2.Pet.SEX_MALE, animal_pb2.PET_SIZE_SMALL, 8, OSAKA,
         dict(good_with_children=True), "Calm senior dog"),
        ("Hana", animal_pb2.SPECIES_RABBIT, "Holland Lop", pet_pb2.Pet.SEX_FEMALE, animal_pb2.PET_SIZE_SMALL, 0,
         TOKYO, {}, "Tiny_bunny"),
    ]
    made = {}
    for name, species, breed, sex, size, age, where, flags, text in specs:
        made[name] = await create(api, owner, pet_pb2.Pet(
            display_name=name, species=species, breed=breed, sex=sex, size=size, birth_date=years_ago(age, 1),
            location=where, description=text, **flags))
    await api.pet.UpdatePet(pet_pb2.UpdatePetRequest(
        pet=pet_pb2.Pet(name=made["Taro"].name, status=pet_pb2.Pet.STATUS_ADOPTED),
        update_mask=field_mask_pb2.FieldMask(paths=["status"])), metadata=owner.md)
    return owner, made


@pytest.mark.parametrize("filters, expected", [
    ({}, ["Hana", "Taro", "Luna", "Rex"]),
    ({"species": [animal_pb2.SPECIES_DOG]}, ["Taro", "Rex"]),
    ({"species": [animal_pb2.SPECIES_CAT, animal_pb2.SPECIES_RABBIT]}, ["Hana", "Luna"]),
    ({"breed": "shiba inu"}, ["Taro"]),
    ({"sizes": [animal_pb2.PET_SIZE_MEDIUM]}, ["Rex"]),
    ({"sex": pet_pb2.Pet.SEX_FEMALE}, ["Hana", "Luna"]),
    ({"min_age_months": 24}, ["Taro", "Luna"]),
    ({"min_age_months": 12, "max_age_months": 24}, ["Rex"]),
    ({"max_age_months": 11}, ["Hana"]),
    ({"statuses": [pet_pb2.Pet.STATUS_AVAILABLE]}, ["Hana", "Luna", "Rex"]),
    ({"statuses": [pet_pb2.Pet.STATUS_ADOPTED]}, ["Taro"]),
    ({"good_with_children": True}, ["Taro", "Rex"]),
    ({"good_with_children": True, "good_with_dogs": True}, ["Rex"]),
    ({"good_with_cats": True}, ["Luna"]),
    ({"query": "CALM dog"}, ["Taro"]),
    ({"query": "lap"}, ["Luna"]),
    ({"query": "100%"}, ["Rex"]),
    ({"query": "_"}, ["Hana"]),  # wildcards are literal
    ({"query": "siamese"}, ["Luna"]),
    ({"near": TOKYO, "radius_km": 10}, ["Hana", "Rex"]),
    ({"near": TOKYO, "radius_km": 50}, ["Hana", "Luna", "Rex"]),
])
async def test_filters(api: Api, catalogue, filters, expected):
    owner, _ = catalogue
    found = (await api.pet.ListPets(pet_pb2.ListPetsRequest(owner=owner.name, **filters))).pets
    assert [p.display_name for p in found] == expected


async def test_distance_ordering(api: Api, catalogue):
    owner, _ = catalogue
    found = (await api.pet.ListPets(pet_pb2.ListPetsRequest(owner=owner.name, near=YOKOHAMA, radius_km=1000,
                                                            order_by="distance"))).pets
    assert [p.display_name for p in found][0] == "Luna" and [p.display_name for p in found][-1] == "Taro"
    assert found[0].distance_km < 1 and 25 < found[1].distance_km < 30 and 350 < found[-1].distance_km < 450


@pytest.mark.parametrize("request_fields, field", [
    ({"order_by": "name"}, "order_by"),
    ({"order_by": "distance"}, "near"),
    ({"near": TOKYO}, "radius_km"),
    ({"near": TOKYO, "radius_km": 30000}, "radius_km"),
    ({"radius_km": 5}, "near"),
    ({"near": latlng_pb2.LatLng(latitude=100), "radius_km": 5}, "near"),
    ({"min_age_months": 10, "max_age_months": 5}, "min_age_months"),
    ({"page_size": -1}, "page_size"),
    ({"owner": "people/1"}, "owner"),
])
async def test_bad_searches(api: Api, request_fields, field):
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.pet.ListPets(pet_pb2.ListPetsRequest(**request_fields)))
    assert field in violations(err)


async def test_paging_sees_every_pet_once_in_a_stable_order(api: Api):
    owner = await api.signup("Breeder")
    names = {(await create(api, owner, dog(f"Pup {i}"))).name for i in range(25)}
    for order in ("", "distance"):
        extra = {"near": TOKYO, "radius_km": 1} if order else {}
        if order:
            for n in names:
                await api.pet.UpdatePet(pet_pb2.UpdatePetRequest(pet=pet_pb2.Pet(name=n, location=TOKYO),
                                        update_mask=field_mask_pb2.FieldMask(paths=["location"])), metadata=owner.md)
        seen, token = [], ""
        while True:
            page = await api.pet.ListPets(pet_pb2.ListPetsRequest(owner=owner.name, page_size=7, page_token=token,
                                                                  order_by=order, **extra))
            seen += [p.name for p in page.pets]
            token = page.next_page_token
            if not token:
                break
        assert len(seen) == 25 and set(seen) == names
    first = await api.pet.ListPets(pet_pb2.ListPetsRequest(owner=owner.name, page_size=7))
    await expect(grpc.StatusCode.INVALID_ARGUMENT, api.pet.ListPets(pet_pb2.ListPetsRequest(
        owner=owner.name, page_size=7, page_token=first.next_page_token, species=[animal_pb2.SPECIES_CAT])))
    for garbage in ("xyz", first.next_page_token[:-3] + "abc", "e30"):
        await expect(grpc.StatusCode.INVALID_ARGUMENT, api.pet.ListPets(pet_pb2.ListPetsRequest(
            owner=owner.name, page_size=7, page_token=garbage)))


@pytest.mark.parametrize("fmt, mime", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
async def test_photos_are_checked_by_content_and_stored(api: Api, users, fmt, mime):
    owner, _ = users
    pet = await create(api, owner, dog("Photogenic"))
    content = image(fmt)
    photo = (await api.pet.UploadPetPhoto(pet_pb2.UploadPetPhotoRequest(parent=pet.name, content=content),
                                          metadata=owner.md)).photo
    assert (photo.content_type, photo.width, photo.height, photo.size_bytes) == (mime, 64, 48, len(content))
    assert photo.name.startswith(pet.name + "/photos/")
    assert await api.platform.rt.blobs.get(photo.name) == (content, mime)
    listed = (await api.pet.GetPet(pet_pb2.GetPetRequest(name=pet.name))).pet.photos
    assert [p.name for p in listed] == [photo.name] and listed[0].uri
    await api.pet.DeletePetPhoto(pet_pb2.DeletePetPhotoRequest(name=photo.name), metadata=owner.md)
    assert not (await api.pet.GetPet(pet_pb2.GetPetRequest(name=pet.name))).pet.photos


@pytest.mark.parametrize("content, reason", [
    (b"GIF89a" + b"\x00" * 100, "PHOTO_INVALID"),
    (b"just some text that claims to be a jpeg", "PHOTO_INVALID"),
    (image("PNG")[:-40], "PHOTO_INVALID"),
    (image("JPEG", (64, 64))[:200], "PHOTO_INVALID"),
    (image("WEBP")[:-30], "PHOTO_INVALID"),
    (png(64, 48, 48)[:-20], "PHOTO_INVALID"),  # cut inside the pixel data
    # 70 compressed text chunks of 1 MiB each in 74 KB: past what Pillow inflates (64 MiB)
    (png(8, 8, 8, b"".join(png_chunk(b"zTXt", b"k%d\0\0" % i + zlib.compress(b"a" * (1 << 20)))
                           for i in range(70))), "PHOTO_INVALID"),
    (image("BMP"), "PHOTO_TYPE"),
    (b"\x89PNG" + b"\x00" * (6 * 1024 * 1024), "PHOTO_TOO_LARGE"),
])
async def test_bad_photos_are_refused(api: Api, users, content, reason):
    owner, _ = users
    pet = await create(api, owner, dog("Camera shy"))
    await expect(grpc.StatusCode.INVALID_ARGUMENT, api.pet.UploadPetPhoto(
        pet_pb2.UploadPetPhotoRequest(parent=pet.name, content=content), metadata=owner.md), reason)
    assert not (await api.pet.GetPet(pet_pb2.GetPetRequest(name=pet.name))).pet.photos


@pytest.mark.parametrize("content", [
    pytest.param(lambda: png(6300, 6300, 1), id="PNG claiming 6300x6300 in 86 bytes"),
    pytest.param(lambda: png(10000, 10000, 1), id="past Pillow's bomb warning"),
    pytest.param(lambda: png(20000, 20000, 1), id="past Pillow's bomb error"),
    pytest.param(lambda: png(1, 16_777_217, 1), id="one pixel wide"),
    *(pytest.param(functools.partial(just_past_the_cap, fmt), id=f"{fmt} 4097x4096")
      for fmt in ("PNG", "JPEG", "WEBP")),
])
async def test_photos_past_the_pixel_cap_are_refused_from_their_header(api: Api, users, content):
    """The lying headers carry one row of pixels: decoding would find them short (PHOTO_INVALID), so
    PHOTO_TOO_LARGE shows they were refused before any decoding."""
    owner, _ = users
    pet = await create(api, owner, dog("Huge"))
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.pet.UploadPetPhoto(
        pet_pb2.UploadPetPhotoRequest(parent=pet.name, content=content()), metadata=owner.md), "PHOTO_TOO_LARGE")
    assert "at most 16,777,216 pixels" in violations(err)["content"]


async def test_photos_at_the_pixel_cap_are_accepted(api: Api, users):
    owner, _ = users
    pet = await create(api, owner, dog("Panorama"))
    for width, height in ((4096, 4096), (16_777_216 // 2, 2)):
        photo = (await api.pet.UploadPetPhoto(pet_pb2.UploadPetPhotoRequest(
            parent=pet.name, content=png(width, height, height)), metadata=owner.md)).photo
        assert (photo.width, photo.height) == (width, height)


async def test_damaged_photos_are_client_errors(api: Api, users):
    """Bytes flipped and files cut at random: each upload is stored or refused as INVALID_ARGUMENT, never
    an INTERNAL error."""
    owner, _ = users
    pet = await create(api, owner, dog("Glitch"))
    rnd = random.Random(7)
    source = Image.effect_noise((64, 48), 60).convert("RGB")
    for fmt in ("PNG", "JPEG", "WEBP"):
        buf = io.BytesIO()
        source.save(buf, fmt)
        for _ in range(40):
            damaged = bytearray(buf.getvalue())
            for _ in range(rnd.randint(1, 6)):
                damaged[rnd.randrange(len(damaged))] = rnd.randrange(256)
            if rnd.random() < 0.3:
                damaged = damaged[:rnd.randrange(len(damaged))]
            try:
                photo = (await api.pet.UploadPetPhoto(pet_pb2.UploadPetPhotoRequest(
                    parent=pet.name, content=bytes(damaged)), metadata=owner.md)).photo
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (fmt, e.details())
                assert error_reason(e) in ("PHOTO_INVALID", "PHOTO_TYPE", "PHOTO_TOO_LARGE")
            else:  # the photo limit must not end the run
                await api.pet.DeletePetPhoto(pet_pb2.DeletePetPhotoRequest(name=photo.name), metadata=owner.md)


async def test_photos_are_decoded_a_few_at_a_time(api: Api, users, monkeypatch):
    owner, _ = users
    pet = await create(api, owner, dog("Queued"))
    lock, release = threading.Lock(), threading.Event()
    running, most = [0], [0]
    check = domain.check_photo

    def held_check(content: bytes):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            release.wait(10)
            return check(content)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(domain, "check_photo", held_check)
    uploads = [asyncio.ensure_future(api.pet.UploadPetPhoto(pet_pb2.UploadPetPhotoRequest(
        parent=pet.name, content=image("PNG")), metadata=owner.md)) for _ in range(3 * media.DECODERS)]
    try:
        for _ in range(500):
            if running[0] == media.DECODERS:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # room for any more to start, were the pool not bounded
        assert most[0] == media.DECODERS
    finally:
        release.set()
    assert len(await asyncio.gather(*uploads)) == 3 * media.DECODERS


async def test_deleting_a_pet_removes_its_photo_blobs(api: Api, users):
    owner, _ = users
    pet = await create(api, owner, dog("Leaving"))
    photo = (await api.pet.UploadPetPhoto(pet_pb2.UploadPetPhotoRequest(parent=pet.name, content=image("PNG")),
                                          metadata=owner.md)).photo
    await api.pet.DeletePet(pet_pb2.DeletePetRequest(name=pet.name), metadata=owner.md)
    with pytest.raises(KeyError):
        await api.platform.rt.blobs.get(photo.name)


async def photo_limit_holds_under_concurrency(client: Api) -> None:
    """25 parallel uploads leave exactly 20 photos; parallel deletions free exactly the slots they free."""
    owner = await client.signup("Collector")
    pet = await create(client, owner, dog("Snapshot"))

    async def upload() -> pet_pb2.Photo | grpc.aio.AioRpcError:
        try:
            return (await client.pet.UploadPetPhoto(pet_pb2.UploadPetPhotoRequest(
                parent=pet.name, content=image("PNG")), metadata=owner.md)).photo
        except grpc.aio.AioRpcError as e:
            return e

    def split(results) -> list[pet_pb2.Photo]:
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert all(r.code() == grpc.StatusCode.FAILED_PRECONDITION and error_reason(r) == "TOO_MANY_PHOTOS"
                   for r in refused), [r.details() for r in refused]
        return [r for r in results if not isinstance(r, grpc.aio.AioRpcError)]

    async def stored() -> list[str]:
        return [p.name for p in (await client.pet.GetPet(pet_pb2.GetPetRequest(name=pet.name))).pet.photos]

    taken = split(await asyncio.gather(*(upload() for _ in range(25))))
    assert len(taken) == 20 and sorted(await stored()) == sorted(p.name for p in taken)
    # Three deletions in parallel, one of them twice: three slots come free, not four.
    doomed = [taken[0].name, taken[1].name, taken[2].name, taken[2].name]
    deleted = await asyncio.gather(*(client.pet.DeletePetPhoto(pet_pb2.DeletePetPhotoRequest(name=n),
                                                               metadata=owner.md) for n in doomed),
                                   return_exceptions=True)
    assert [isinstance(d, grpc.aio.AioRpcError) and d.code() for d in deleted].count(grpc.StatusCode.NOT_FOUND) == 1
    assert len(split(await asyncio.gather(*(upload() for _ in range(6))))) == 3
    assert len(await stored()) == 20


async def test_the_photo_limit_holds_under_concurrency(api: Api):
    await photo_limit_holds_under_concurrency(api)


@pytest.mark.real
async def test_the_photo_limit_holds_under_concurrency_on_postgresql(real_api: Api):
    await photo_limit_holds_under_concurrency(real_api)


async def test_health_records(api: Api, users):
    owner, stranger = users
    pet = await create(api, owner, dog("Healthy"))
    for i, title in enumerate(["Rabies vaccine", "Checkup", "Deworming"]):
        await api.pet.CreateHealthRecord(pet_pb2.CreateHealthRecordRequest(
            parent=pet.name, health_record=pet_pb2.HealthRecord(
                kind=pet_pb2.HealthRecord.KIND_VACCINATION, title=title, date=years_ago(0, 3 - i),
                veterinarian="Dr. Sato")),
            metadata=owner.md)
    page1 = await api.pet.ListHealthRecords(pet_pb2.ListHealthRecordsRequest(parent=pet.name, page_size=2),
                                            metadata=owner.md)
    page2 = await api.pet.ListHealthRecords(pet_pb2.ListHealthRecordsRequest(
        parent=pet.name, page_size=2, page_token=page1.next_page_token), metadata=owner.md)
    assert [r.title for r in (*page1.health_records, *page2.health_records)] == [
        "Deworming", "Checkup", "Rabies vaccine"]
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.pet.CreateHealthRecord(pet_pb2.CreateHealthRecordRequest(
        parent=pet.name, health_record=pet_pb2.HealthRecord(title="", date=date_pb2.Date(year=2020, month=2, day=30))),
        metadata=owner.md))
    assert {"health_record.kind", "health_record.title", "health_record.date"} <= set(violations(err))
    await expect(grpc.StatusCode.UNAUTHENTICATED,
                 api.pet.ListHealthRecords(pet_pb2.ListHealthRecordsRequest(parent=pet.name)))


async def test_health_records_are_private_to_the_owner_and_admins(tmp_path, smtp_sink):
    admin_email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink, admin_emails=[admin_email]))
    client = Api(platform, smtp_sink)
    try:
        owner, stranger = await client.signup("Owner"), await client.signup("Stranger")
        admin = await client.signup_admin(admin_email, "Vet Office")
        pet = await create(client, owner, dog("Discreet"))
        for title, months in (("Private matter", 1), ("Older matter", 2)):
            await client.pet.CreateHealthRecord(pet_pb2.CreateHealthRecordRequest(
                parent=pet.name, health_record=pet_pb2.HealthRecord(
                    kind=pet_pb2.HealthRecord.KIND_TREATMENT, title=title, date=years_ago(0, months))),
                metadata=owner.md)

        def listing(name: str, session):
            return client.pet.ListHealthRecords(pet_pb2.ListHealthRecordsRequest(parent=name), metadata=session.md)

        for reader in (owner, admin):
            assert [r.title for r in (await listing(pet.name, reader)).health_records] == ["Private matter",
                                                                                          "Older matter"]
        # Anyone else: refused whatever they ask, a page of the owner's included; the pet stays public.
        owner_page = await client.pet.ListHealthRecords(pet_pb2.ListHealthRecordsRequest(
            parent=pet.name, page_size=1), metadata=owner.md)
        assert owner_page.next_page_token
        err = await expect(grpc.StatusCode.PERMISSION_DENIED, listing(pet.name, stranger), "NOT_OWNER")
        assert "Private matter" not in err.details()
        await expect(grpc.StatusCode.PERMISSION_DENIED, client.pet.ListHealthRecords(pet_pb2.ListHealthRecordsRequest(
            parent=pet.name, page_size=1, page_token=owner_page.next_page_token), metadata=stranger.md), "NOT_OWNER")
        theirs = await create(client, stranger, dog("Theirs"))
        await expect(grpc.StatusCode.PERMISSION_DENIED, listing(theirs.name, owner), "NOT_OWNER")
        assert (await client.pet.GetPet(pet_pb2.GetPetRequest(name=pet.name))).pet.name == pet.name
        # No such pet: NOT_FOUND for everyone, its existence being public anyway.
        for session in (owner, stranger, admin):
            await expect(grpc.StatusCode.NOT_FOUND, listing("pets/" + "0" * 32, session))
    finally:
        await client.channel.close()
        await platform.stop(grace=1)


@pytest.mark.real
async def test_pet_flow_on_the_real_profile(real_api: Api):
    """PostgreSQL (schema per service), RabbitMQ events, S3 photos (moto standing in for MinIO)."""
    owner, stranger = await real_api.signup("Owner"), await real_api.signup("Stranger")
    rex = await create(real_api, owner, dog("Rex", location=TOKYO, birth_date=years_ago(3)))
    await create(real_api, owner, pet_pb2.Pet(display_name="Tama", species=animal_pb2.SPECIES_CAT, location=OSAKA))
    photo = (await real_api.pet.UploadPetPhoto(pet_pb2.UploadPetPhotoRequest(parent=rex.name, content=image("JPEG")),
                                               metadata=owner.md)).photo
    assert photo.uri.startswith("http") and "X-Amz-Signature" in photo.uri  # presigned S3 URL
    found = (await real_api.pet.ListPets(pet_pb2.ListPetsRequest(
        owner=owner.name, near=TOKYO, radius_km=100, species=[animal_pb2.SPECIES_DOG], min_age_months=24,
        order_by="distance"))).pets
    assert [p.name for p in found] == [rex.name] and found[0].photos[0].name == photo.name
    await expect(grpc.StatusCode.PERMISSION_DENIED, real_api.pet.DeletePet(pet_pb2.DeletePetRequest(name=rex.name),
                                                                           metadata=stranger.md))
    pet_db = module_of(real_api, "pet").db
    for _ in range(100):
        async with pet_db.transaction() as s:
            pending = await s.scalar(sa.select(sa.func.count()).select_from(outbox).where(
                outbox.c.publish_time.is_(None)))
        if not pending:
            break
        await asyncio.sleep(0.05)
    assert pending == 0, "pet.created events were confirmed by RabbitMQ"
