"""Demo data for `make up`: a few users and 60 pets with photos and locations, most listed for adoption
and every fifth open to playdates (each demo user has some of both); Alice and Bob then swipe to an
adoption match and a playdate match, and talk a little in the two chat rooms those make; and three
pet-care businesses of demo users near the pets (a dog walker in Tokyo, a groomer in Osaka, a day care
in Bangkok) with services open every day, so a demo owner can book a demo walker. All of it goes
through the public gRPC API, once per data dir (a marker file remembers it); every step can be
repeated by a run that stopped half-way. The demo admin has two-factor authentication on, as every admin must to act as
one: its TOTP secret is kept in the data dir. The demo moderator is made one by the demo admin (auth's
SetAccountRole) and has its second factor too (make_moderator). Last, a scammer ("Quick Puppies") lists a
cheap puppy with a photo taken from a demo pet and asks for a gift card: the fraud service holds it (post_scam)."""
from __future__ import annotations

import asyncio
import functools
import io
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc
import pyotp
from google.type import date_pb2, latlng_pb2
from PIL import Image, ImageDraw

from mesh.money import from_minor
from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc
from petplatform.chat.v1 import chat_pb2, chat_pb2_grpc
from petplatform.common.v1 import animal_pb2
from petplatform.matching.v1 import matching_pb2, matching_pb2_grpc
from petplatform.marketplace.v1 import marketplace_pb2 as market_pb2
from petplatform.marketplace.v1 import marketplace_pb2_grpc as market_grpc
from petplatform.pet.v1 import pet_pb2, pet_pb2_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")

PASSWORD = "demo-password-1"
ADMIN_EMAIL = "admin@demo.petplatform.local"  # `make up` lists it in PETPLATFORM_ADMIN_EMAILS
ADMIN_TOTP_FILE = "demo-admin-totp-secret"  # under the data dir
MODERATOR = ("moderator@demo.petplatform.local", "Demo Moderator")  # owns no pets; reviews the scam's case
MODERATOR_TOTP_FILE = "demo-moderator-totp-secret"  # under the data dir
USERS = [("alice@demo.petplatform.local", "Alice (shelter)"), ("bob@demo.petplatform.local", "Bob"),
         ("chiara@demo.petplatform.local", "Chiara"), (ADMIN_EMAIL, "Demo Admin")]
BREEDS = {
    animal_pb2.SPECIES_DOG: ["Shiba Inu", "Labrador Retriever", "Beagle", "Border Collie", "Mixed"],
    animal_pb2.SPECIES_CAT: ["Domestic Shorthair", "Maine Coon", "Siamese", "Ragdoll"],
    animal_pb2.SPECIES_RABBIT: ["Holland Lop", "Netherland Dwarf"],
    animal_pb2.SPECIES_BIRD: ["Budgerigar", "Cockatiel"],
    animal_pb2.SPECIES_HAMSTER: ["Syrian", "Dwarf"],
}
NAMES = ["Mochi", "Kuro", "Sora", "Hana", "Taro", "Luna", "Max", "Bella", "Coco", "Momo", "Rex", "Nala", "Leo",
         "Yuki", "Pochi", "Milo", "Kiki", "Sunny", "Ume", "Biscuit"]
ENERGY = [animal_pb2.ENERGY_LEVEL_LOW, animal_pb2.ENERGY_LEVEL_MEDIUM, animal_pb2.ENERGY_LEVEL_HIGH]
PLAYDATE_EVERY = 5  # pets 0, 5, 10...: owners rotate over the three non-admin users, so each has some
# What Alice (the shelter) and Bob say in the rooms of their adoption match and playdate match.
CONVERSATIONS = {
    matching_pb2.Match.KIND_ADOPTION: [
        (1, "Hi! I'd love to adopt {pet}. Is a visit this weekend possible?"),
        (0, "Hello Bob, thanks for your interest! Saturday at 11 works for us."),
        (1, "Perfect, see you then. Anything I should bring?"),
        (0, "Just yourself: we'll go through the adoption papers together."),
    ],
    matching_pb2.Match.KIND_PLAYDATE: [
        (0, "Our pets would get along great. Park on Sunday?"),
        (1, "Yes! Sunday afternoon, by the big fountain?"),
    ],
}
STEP_TIMEOUT = 120.0  # seconds the demo waits for an event-driven step (matching's copy of a pet, a room)
CITIES = [(35.6812, 139.7671), (34.6937, 135.5023), (13.7563, 100.5018), (43.0618, 141.3545)]  # Tokyo, Osaka...
# Businesses of demo users near the pets: (owner's index in USERS, name, city index, zone, kind, species,
# price in minor units, currency, capacity). Chiara walks dogs in Tokyo, where Alice and Bob have some.
BUSINESSES = [
    (2, "Chiara's Dog Walks", 0, "Asia/Tokyo", market_pb2.SERVICE_KIND_WALKING, [animal_pb2.SPECIES_DOG], 2500,
     "JPY", 3),
    (0, "Alice's Grooming Corner", 1, "Asia/Tokyo", market_pb2.SERVICE_KIND_GROOMING,
     [animal_pb2.SPECIES_DOG, animal_pb2.SPECIES_CAT], 6000, "JPY", 1),
    (2, "Chiara's Day Care", 2, "Asia/Bangkok", market_pb2.SERVICE_KIND_DAY_CARE, [animal_pb2.SPECIES_DOG], 90000,
     "THB", 5),  # 900.00 THB
]
OPEN_HOURS = (8, 20)  # every day, in the business's zone


async def enroll(auth: auth_pb2_grpc.AuthServiceStub, access_token: str, data_dir: Path, file: str,
                 who: str) -> list[str]:
    """Turns on a demo account's second factor and keeps its secret (in `file` of the data dir) where a person
    can make codes from it; the recovery codes, which are not kept."""
    md = (("authorization", f"Bearer {access_token}"),)
    start = await auth.StartMfaEnrollment(auth_pb2.StartMfaEnrollmentRequest(), metadata=md)
    path = data_dir / file
    path.write_text(start.secret + "\n")
    path.chmod(0o600)
    done = await auth.ConfirmMfaEnrollment(auth_pb2.ConfirmMfaEnrollmentRequest(
        code=pyotp.TOTP(start.secret).now()), metadata=md)
    log.info("the demo %s signs in with a code: .venv/bin/python -c \"import pyotp; "
             "print(pyotp.TOTP(open('%s').read().strip()).now())\"", who, path)
    return list(done.recovery_codes)


async def make_moderator(auth: auth_pb2_grpc.AuthServiceStub, data_dir: Path, admin_recovery: list[str]) -> None:
    """The demo moderator: the demo admin, signed in with its second factor, grants the role (auth ends the
    account's sessions, so it signs in again), then the moderator turns its own second factor on. Done once:
    a moderator already asking for its code is made. The admin signs in with a recovery code when it was
    enrolled in this run (the TOTP code of this time step is spent by the enrollment), else with its app's
    code."""
    account = (await auth.Register(auth_pb2.RegisterRequest(
        email=MODERATOR[0], password=PASSWORD, display_name=MODERATOR[1]))).account
    if (await auth.Login(auth_pb2.LoginRequest(email=MODERATOR[0], password=PASSWORD))).mfa_challenge:
        return
    challenge = (await auth.Login(auth_pb2.LoginRequest(email=ADMIN_EMAIL, password=PASSWORD))).mfa_challenge
    code = admin_recovery[0] if admin_recovery else pyotp.TOTP(
        (data_dir / ADMIN_TOTP_FILE).read_text().strip()).now()
    admin = await auth.VerifyMfa(auth_pb2.VerifyMfaRequest(mfa_challenge=challenge, code=code))
    await auth.SetAccountRole(auth_pb2.SetAccountRoleRequest(name=account.name, role=auth_pb2.ROLE_MODERATOR),
                              metadata=(("authorization", f"Bearer {admin.access_token}"),))
    tokens = await auth.Login(auth_pb2.LoginRequest(email=MODERATOR[0], password=PASSWORD))
    await enroll(auth, tokens.access_token, data_dir, MODERATOR_TOTP_FILE, "moderator")


async def load_businesses(market: market_grpc.MarketplaceServiceStub, owners: list) -> None:
    """The demo businesses, each with one service open every day; request ids make a rerun after a
    half-way stop answer with what it made."""
    for i, (who, name, city, zone, kind, species, price, currency, capacity) in enumerate(BUSINESSES):
        md = owners[who]
        lat, lng = CITIES[city]
        business = (await market.CreateBusiness(market_pb2.CreateBusinessRequest(business=market_pb2.Business(
            display_name=name, description="A demo business: book it with any pm_card_... test token.",
            location=latlng_pb2.LatLng(latitude=lat, longitude=lng), service_radius_km=20, time_zone=zone,
            payout_account=f"acct_demo_{i + 1}"), request_id=f"demo-business-{i}"), metadata=md)).business
        service = (await market.CreateService(market_pb2.CreateServiceRequest(parent=business.name, service=(
            market_pb2.Service(display_name=name.split("'s ", 1)[-1], kind=kind, duration_minutes=60,
                               capacity=capacity, species=species,
                               price=from_minor(price, currency))),
            request_id=f"demo-service-{i}"), metadata=md)).service
        await market.UpdateAvailability(market_pb2.UpdateAvailabilityRequest(availability=market_pb2.Availability(
            name=f"{service.name}/availability", weekly_hours=[
                market_pb2.OpeningHours(day=d, open_time={"hours": OPEN_HOURS[0]}, close_time={"hours": OPEN_HOURS[1]})
                for d in range(1, 8)])), metadata=md)


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> bytes:
    """A photo of its own: shapes placed at random, so perceptual hashes tell the demo photos apart (one
    centred shape in different colours would be one picture recoloured, to the fraud service's pHash)."""
    rnd = random.Random(seed)
    img = Image.new("RGB", (320, 240), tuple(rnd.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x, y, r = rnd.randrange(40, 280), rnd.randrange(40, 200), rnd.randrange(20, 70)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rnd.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    img.resize(size).save(buf, "JPEG", quality=80)
    return buf.getvalue()


async def load_demo_data(address: str, data_dir: Path) -> None:
    marker = data_dir / "demo-data-loaded"
    if marker.exists():
        return
    rnd = random.Random(7)
    async with grpc.aio.insecure_channel(address) as ch:
        auth = auth_pb2_grpc.AuthServiceStub(ch)
        pets = pet_pb2_grpc.PetServiceStub(ch)
        owners = []
        made: list[tuple[int, pet_pb2.Pet]] = []  # (index of the owner in USERS, pet)
        admin_recovery: list[str] = []
        for email, name in USERS:
            # An email already registered (by a run that stopped half-way) gets the same answer.
            account = (await auth.Register(auth_pb2.RegisterRequest(
                email=email, password=PASSWORD, display_name=name))).account
            if email == ADMIN_EMAIL and account.role != auth_pb2.ROLE_ADMIN:
                log.warning("%s is not an admin: list it in PETPLATFORM_ADMIN_EMAILS (make up does)", email)
            tokens = await auth.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD))
            if email == ADMIN_EMAIL and not tokens.mfa_challenge:  # else enrolled by a run that stopped half-way
                admin_recovery = await enroll(auth, tokens.access_token, data_dir, ADMIN_TOTP_FILE, "admin")
            owners.append((("authorization", f"Bearer {tokens.access_token}"),))
        await make_moderator(auth, data_dir, admin_recovery)
        for i in range(60):
            species = rnd.choice(list(BREEDS))
            lat, lng = rnd.choice(CITIES)
            pet = pet_pb2.Pet(
                display_name=f"{rnd.choice(NAMES)} {i + 1}", species=species, breed=rnd.choice(BREEDS[species]),
                sex=rnd.choice([pet_pb2.Pet.SEX_MALE, pet_pb2.Pet.SEX_FEMALE]),
                size=rnd.choice([animal_pb2.PET_SIZE_SMALL, animal_pb2.PET_SIZE_MEDIUM, animal_pb2.PET_SIZE_LARGE]),
                birth_date=date_pb2.Date(year=rnd.randint(2014, 2025), month=rnd.randint(1, 12),
                                         day=rnd.randint(1, 28)),
                description="Friendly, vaccinated and looking for a loving home.",
                location=latlng_pb2.LatLng(latitude=lat + rnd.uniform(-0.2, 0.2),
                                           longitude=lng + rnd.uniform(-0.2, 0.2)),
                good_with_children=rnd.random() < 0.6, good_with_dogs=rnd.random() < 0.5,
                good_with_cats=rnd.random() < 0.4, energy=rnd.choice(ENERGY),
                listing=pet_pb2.Pet.LISTING_PLAYDATES if i % PLAYDATE_EVERY == 0 else pet_pb2.Pet.LISTING_ADOPTION)
            md = owners[i % 3]
            created = (await pets.CreatePet(pet_pb2.CreatePetRequest(pet=pet, request_id=f"demo-{i}"), metadata=md)).pet
            if not created.photos:
                await pets.UploadPetPhoto(pet_pb2.UploadPetPhotoRequest(parent=created.name, content=photo(i)),
                                          metadata=md)
            made.append((i % 3, created))
        await match_and_talk(ch, alice=owners[0], bob=owners[1], pets=made)
        await load_businesses(market_grpc.MarketplaceServiceStub(ch), owners)
        await post_scam(ch, stolen=next(p for o, p in made if o == 1 and p.species == animal_pb2.SPECIES_DOG),
                        victim=owners[2])
    marker.write_text("ok\n")
    log.info("demo data loaded: %d users (password %r, admin %s, moderator %s), 60 pets "
             "(every %dth open to playdates); "
             "Alice and Bob have an adoption match and a playdate match, with a room each; %d businesses",
             len(USERS), PASSWORD, ADMIN_EMAIL, MODERATOR[0], PLAYDATE_EVERY, len(BUSINESSES))


SCAMMER = ("quick.puppies@demo.petplatform.local", "Quick Puppies")
SCAM_LISTING = ("Adorable purebred puppy, vet checked with papers, only $90 because we are relocating. "
                "Payment by Amazon gift card only. No visits, I am abroad: the puppy will be delivered to you.")
SCAM_MESSAGE = "Great! Send the $90 as an Amazon gift card code today, plus $150 shipping fee for the crate."


async def post_scam(ch: grpc.aio.Channel, *, stolen: pet_pb2.Pet, victim: tuple[tuple[str, str], ...]) -> None:
    """The fraud demo: a new account lists a cheap "puppy" with a photo taken from a demo pet (resized, so
    re-encoded) and a gift card asked for in its text; the pet service holds it on the fraud service's advice
    before publishing it (or, if fraud could not answer in time, fraud holds it from its events). Then, best
    effort, Chiara likes it, the scammer accepts and asks for a gift card in chat (a listing already hidden by
    the hold cannot be liked: that part is skipped)."""
    auth, pets = auth_pb2_grpc.AuthServiceStub(ch), pet_pb2_grpc.PetServiceStub(ch)
    await auth.Register(auth_pb2.RegisterRequest(email=SCAMMER[0], password=PASSWORD, display_name=SCAMMER[1]))
    try:
        tokens = await auth.Login(auth_pb2.LoginRequest(email=SCAMMER[0], password=PASSWORD))
    except grpc.aio.AioRpcError as e:
        if e.code() != grpc.StatusCode.PERMISSION_DENIED:
            raise
        log.info("demo data: the scammer was already banned or suspended (%s): nothing more to post", e.details())
        return
    md = (("authorization", f"Bearer {tokens.access_token}"),)
    pet = (await pets.CreatePet(pet_pb2.CreatePetRequest(pet=pet_pb2.Pet(
        display_name="Puppy", species=stolen.species, breed=stolen.breed, description=SCAM_LISTING,
        location=stolen.location), request_id="demo-scam"), metadata=md)).pet
    if not pet.photos:
        seed = int(stolen.display_name.rsplit(" ", 1)[1]) - 1  # the demo pet's number: its photo's seed
        await pets.UploadPetPhoto(pet_pb2.UploadPetPhotoRequest(parent=pet.name, content=photo(seed, (300, 225))),
                                  metadata=md)
    if pet.moderation == pet_pb2.Pet.MODERATION_HELD:  # screened before publishing: nobody can like it
        log.info("demo data: the scammer's chat was skipped: the listing was held before it was published")
        return
    try:
        matching, chat = matching_pb2_grpc.MatchingServiceStub(ch), chat_pb2_grpc.ChatServiceStub(ch)
        swipe = matching_pb2.SwipeRequest(pet=pet.name, action=matching_pb2.SWIPE_ACTION_LIKE)
        interest = (await _retrying(lambda: matching.Swipe(swipe, metadata=victim), what="matching's copy of the scam",
                                    patience=15)).interest
        if interest.name:
            await matching.RespondToInterest(matching_pb2.RespondToInterestRequest(
                name=interest.name, decision=matching_pb2.RespondToInterestRequest.DECISION_ACCEPT), metadata=md)
        matches = (await matching.ListMatches(matching_pb2.ListMatchesRequest(page_size=100), metadata=md)).matches
        match = next(m for m in matches if pet.name in m.pets)
        room = "rooms/" + match.name.removeprefix("matches/")
        await _retrying(functools.partial(chat.GetRoom, chat_pb2.GetRoomRequest(name=room), metadata=md),
                        what="the scam room", patience=15)
        await chat.SendMessage(chat_pb2.SendMessageRequest(
            parent=room, message_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{room}/scam").hex,
            message=chat_pb2.Message(text=SCAM_MESSAGE)), metadata=md)
    except (grpc.aio.AioRpcError, StopIteration) as e:
        log.info("demo data: the scammer's chat was skipped (%s): the listing was held first",
                 e.code().name if isinstance(e, grpc.aio.AioRpcError) else "no match")


async def match_and_talk(ch: grpc.aio.Channel, *, alice: tuple[tuple[str, str], ...],
                         bob: tuple[tuple[str, str], ...], pets: list[tuple[int, pet_pb2.Pet]]) -> None:
    """Bob asks to adopt one of Alice's pets (she accepts) and their playdate pets like each other; then
    they write in both rooms. Message ids are derived from the room, so a second run stores nothing new."""
    matching = matching_pb2_grpc.MatchingServiceStub(ch)
    chat = chat_pb2_grpc.ChatServiceStub(ch)

    def first(owner: int, listing: int) -> pet_pb2.Pet:
        return next(p for o, p in pets if o == owner and p.listing == listing)
    adoptable = first(0, pet_pb2.Pet.LISTING_ADOPTION)
    a_player, b_player = first(0, pet_pb2.Pet.LISTING_PLAYDATES), first(1, pet_pb2.Pet.LISTING_PLAYDATES)
    like = matching_pb2.SWIPE_ACTION_LIKE

    async def swipe(request: matching_pb2.SwipeRequest, md: tuple[tuple[str, str], ...]) -> matching_pb2.SwipeResponse:
        # Matching learns of the pets from their events: until it has, the pet is NOT_FOUND there.
        return await _retrying(lambda: matching.Swipe(request, metadata=md), what=f"matching's copy of {request.pet}")
    interest = (await swipe(matching_pb2.SwipeRequest(pet=adoptable.name, action=like), bob)).interest
    if interest.name:  # else the like was repeated by a second run, and the interest answered then
        await matching.RespondToInterest(matching_pb2.RespondToInterestRequest(
            name=interest.name, decision=matching_pb2.RespondToInterestRequest.DECISION_ACCEPT), metadata=alice)
    await swipe(matching_pb2.SwipeRequest(pet=a_player.name, action=like, acting_pet=b_player.name), bob)
    await swipe(matching_pb2.SwipeRequest(pet=b_player.name, action=like, acting_pet=a_player.name), alice)
    matches = (await matching.ListMatches(matching_pb2.ListMatchesRequest(page_size=100), metadata=alice)).matches
    people = (alice, bob)
    for kind, lines in CONVERSATIONS.items():
        match = next(m for m in matches if m.kind == kind and (kind != matching_pb2.Match.KIND_ADOPTION
                                                                or adoptable.name in m.pets))
        room = "rooms/" + match.name.removeprefix("matches/")
        # The chat service makes the room when match.created reaches it.
        await _retrying(functools.partial(chat.GetRoom, chat_pb2.GetRoomRequest(name=room), metadata=alice),
                        what=f"the room of {match.name}")
        last = 0
        for n, (speaker, text) in enumerate(lines):
            sent = await chat.SendMessage(chat_pb2.SendMessageRequest(
                parent=room, message_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{room}/{n}").hex,
                message=chat_pb2.Message(text=text.format(pet=adoptable.display_name))), metadata=people[speaker])
            last = sent.message.sequence
        # Alice has read everything, Bob all but the last line: Alice's last word shows as unread to him.
        await chat.MarkRead(chat_pb2.MarkReadRequest(room=room, sequence=last), metadata=alice)
        await chat.MarkRead(chat_pb2.MarkReadRequest(room=room, sequence=last - 1), metadata=bob)


async def _retrying(call: Callable[[], Awaitable[T]], *, what: str, patience: float = STEP_TIMEOUT) -> T:
    """`call` again while it is NOT_FOUND, for a step some event has still to make possible."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
            if loop.time() > deadline:
                log.error("demo data: %s is still missing after %.0f s", what, patience)
                raise
        await asyncio.sleep(0.05)
