"""The demo data `make up` loads: its admin account is an admin, with the second factor admins need,
two demo users can swipe their way to an adoption match and a playdate match, and a demo owner books a
demo walker (paid with the local provider; `make up` holds payouts only briefly)."""
from __future__ import annotations

import datetime as dt
import json

import grpc
import jwt
from google.protobuf import field_mask_pb2

from petplatform.auth.v1 import auth_pb2
from petplatform.common.v1 import animal_pb2
from petplatform.marketplace.v1 import marketplace_pb2 as market_pb2
from petplatform.matching.v1 import matching_pb2
from petplatform.pet.v1 import pet_pb2
from petplatform.user.v1 import user_pb2
from app import demo
from tests.support import REPO_ROOT
from tests.support.errors import expect
from tests.support.matching import feed_names, until
from tests.support.platform import Api, embedded_settings, start_platform, totp_code


def make_up_admin_emails() -> list[str]:
    """PETPLATFORM_ADMIN_EMAILS as the Makefile's `up` exports it."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    line = next(ln for ln in makefile.splitlines() if ln.startswith("up: export PETPLATFORM_ADMIN_EMAILS ?="))
    return json.loads(line.split("?=", 1)[1])


async def test_the_demo_admin_is_an_admin_and_two_demo_users_match_under_make_up(tmp_path, smtp_sink):
    assert demo.ADMIN_EMAIL in make_up_admin_emails()
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink, admin_emails=make_up_admin_emails()))
    api = Api(platform, smtp_sink)
    try:
        await demo.load_demo_data(platform.address, tmp_path)
        first = await api.auth.Login(auth_pb2.LoginRequest(email=demo.ADMIN_EMAIL, password=demo.PASSWORD))
        assert first.mfa_challenge and not first.access_token  # the password alone is not enough
        secret = (tmp_path / demo.ADMIN_TOTP_FILE).read_text().strip()
        admin = await api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(mfa_challenge=first.mfa_challenge,
                                                                   code=totp_code(secret, ahead=1)))
        claims = jwt.decode(admin.access_token, options={"verify_signature": False})
        assert claims["role"] == "admin" and "mfa" in claims["amr"]
        # What only an admin may do: change someone else's profile.
        alice = await api.auth.Login(auth_pb2.LoginRequest(email=demo.USERS[0][0], password=demo.PASSWORD))
        me = (await api.user.GetUser(user_pb2.GetUserRequest(name="users/me"),
                                     metadata=(("authorization", f"Bearer {alice.access_token}"),))).user
        updated = (await api.user.UpdateUser(user_pb2.UpdateUserRequest(
            user=user_pb2.User(name=me.name, bio="Checked by the admin"),
            update_mask=field_mask_pb2.FieldMask(paths=["bio"])),
            metadata=(("authorization", f"Bearer {admin.access_token}"),))).user
        assert updated.bio == "Checked by the admin"
        await two_demo_users_match(api)
        await a_demo_owner_books_the_demo_walker(api)
    finally:
        await api.channel.close()
        await platform.stop(grace=1)


async def two_demo_users_match(api: Api) -> None:
    alice, bob = [(await api.auth.Login(auth_pb2.LoginRequest(email=email, password=demo.PASSWORD)))
                  for email, _ in demo.USERS[:2]]
    a_md, b_md = _session(alice).md, _session(bob).md
    a_name, b_name = (f"users/{jwt.decode(t.access_token, options={'verify_signature': False})['sub']}"
                      for t in (alice, bob))

    async def pets_of(owner: str, listing: int) -> list[str]:
        found = await api.pet.ListPets(pet_pb2.ListPetsRequest(owner=owner, listings=[listing], page_size=100))
        return [p.name for p in found.pets]
    a_adoptable = (await pets_of(a_name, pet_pb2.Pet.LISTING_ADOPTION))[0]
    a_player = (await pets_of(a_name, pet_pb2.Pet.LISTING_PLAYDATES))[0]
    b_player = (await pets_of(b_name, pet_pb2.Pet.LISTING_PLAYDATES))[0]

    async def ready():  # matching's copy of the demo pets is made from their events
        return a_adoptable in await feed_names(api, _session(bob)) and \
            b_player in await feed_names(api, _session(alice), acting_pet=a_player)
    await until(ready, timeout=30, what="the demo pets in the feeds")
    like = matching_pb2.SWIPE_ACTION_LIKE
    interest = (await api.matching.Swipe(matching_pb2.SwipeRequest(pet=a_adoptable, action=like),
                                         metadata=b_md)).interest
    adoption = (await api.matching.RespondToInterest(matching_pb2.RespondToInterestRequest(
        name=interest.name, decision=matching_pb2.RespondToInterestRequest.DECISION_ACCEPT), metadata=a_md)).match
    await api.matching.Swipe(matching_pb2.SwipeRequest(pet=a_player, action=like, acting_pet=b_player), metadata=b_md)
    playdate = (await api.matching.Swipe(matching_pb2.SwipeRequest(pet=b_player, action=like, acting_pet=a_player),
                                         metadata=a_md)).match
    assert adoption.kind == matching_pb2.Match.KIND_ADOPTION and playdate.kind == matching_pb2.Match.KIND_PLAYDATE


def _session(tokens):
    """What tests.support.matching's helpers take: something with the caller's metadata."""
    class Caller:
        md = (("authorization", f"Bearer {tokens.access_token}"),)
    return Caller()


async def test_an_admin_without_the_second_factor_acts_as_an_ordinary_user(tmp_path, smtp_sink):
    admin_email = "operator@example.com"
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink, admin_emails=[admin_email]))
    api = Api(platform, smtp_sink)
    try:
        bare = await api.signup("Operator", admin_email)  # admin role, password only
        other = await api.signup("Someone")
        change = user_pb2.UpdateUserRequest(user=user_pb2.User(name=other.name, bio="Changed"),
                                            update_mask=field_mask_pb2.FieldMask(paths=["bio"]))
        await expect(grpc.StatusCode.PERMISSION_DENIED, api.user.UpdateUser(change, metadata=bare.md))
        verifier = platform.rt.verifier
        assert not (await verifier.verify(bare.access_token)).is_admin
        secret, _ = await api.enroll_mfa(bare)
        admin = await api.login_with_code(admin_email, totp_code(secret, ahead=1))
        assert (await verifier.verify(admin.access_token)).is_admin
        assert (await api.user.UpdateUser(change, metadata=admin.md)).user.bio == "Changed"
    finally:
        await api.channel.close()
        await platform.stop(grace=1)


def make_up_payment_hold() -> float:
    """PETPLATFORM_PAYMENT_HOLD_SECONDS as the Makefile's `up` exports it."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    line = next(ln for ln in makefile.splitlines() if ln.startswith("up: export PETPLATFORM_PAYMENT_HOLD_SECONDS ?="))
    return float(line.split("?=", 1)[1])


def test_make_up_pays_businesses_out_after_a_short_hold():
    assert 0 < make_up_payment_hold() <= 300  # a demo sees its payout within minutes, not 48 h


async def a_demo_owner_books_the_demo_walker(api: Api) -> None:
    """Bob finds Chiara's dog walks near Tokyo, books a free slot for a dog of his, Chiara accepts and
    the local provider charges him."""
    bob, chiara = [_session(await api.auth.Login(auth_pb2.LoginRequest(email=email, password=demo.PASSWORD)))
                   for email, _ in (demo.USERS[1], demo.USERS[2])]
    bob_name, chiara_name = [
        (await api.user.GetUser(user_pb2.GetUserRequest(name="users/me"), metadata=who.md)).user.name
        for who in (bob, chiara)]
    _, _, city, *_ = demo.BUSINESSES[0]
    lat, lng = demo.CITIES[city]
    found = (await api.marketplace.SearchBusinesses(market_pb2.SearchBusinessesRequest(
        kind=market_pb2.SERVICE_KIND_WALKING, near={"latitude": lat, "longitude": lng}))).businesses
    walker = next(b for b in found if b.owner == chiara_name)
    (service,) = (await api.marketplace.ListServices(market_pb2.ListServicesRequest(parent=walker.name))).services
    dogs = (await api.pet.ListPets(pet_pb2.ListPetsRequest(owner=bob_name,
                                                           species=[animal_pb2.SPECIES_DOG]))).pets
    assert dogs, "Bob has a dog in the demo data"
    day = dt.date.today() + dt.timedelta(days=3)
    when = {"year": day.year, "month": day.month, "day": day.day}
    free = (await api.marketplace.ListAvailableSlots(market_pb2.ListAvailableSlotsRequest(
        service=service.name, start_date=when, end_date=when))).slots
    assert len(free) == demo.OPEN_HOURS[1] - demo.OPEN_HOURS[0]  # hourly walks, all free
    booking = (await api.marketplace.CreateBooking(market_pb2.CreateBookingRequest(booking=market_pb2.Booking(
        service=service.name, pets=[dogs[0].name], start_time=free[0].start_time, payment_method="pm_card_visa")),
        metadata=bob.md)).booking
    await api.marketplace.AcceptBooking(market_pb2.AcceptBookingRequest(name=booking.name), metadata=chiara.md)

    async def paid():
        b = (await api.marketplace.GetBooking(market_pb2.GetBookingRequest(name=booking.name),
                                              metadata=bob.md)).booking
        return b.payment_status == market_pb2.Booking.PAYMENT_STATUS_PAID
    await until(paid, what="the demo booking, paid")
