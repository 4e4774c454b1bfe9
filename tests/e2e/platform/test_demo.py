"""The demo data `make up` loads: its admin account is an admin, with the second factor admins need;
two demo users have an adoption match and a playdate match, and a chat room for each with a few
messages; a demo owner books a demo walker (paid with the local provider; `make up` holds payouts only
briefly)."""
from __future__ import annotations

import datetime as dt
import json

import grpc
import jwt
import sqlalchemy as sa
from google.protobuf import field_mask_pb2

from petplatform.auth.v1 import auth_pb2
from petplatform.chat.v1 import chat_pb2
from petplatform.common.v1 import animal_pb2
from petplatform.fraud.v1 import events_pb2 as fraud_events
from petplatform.marketplace.v1 import marketplace_pb2 as market_pb2
from petplatform.matching.v1 import matching_pb2
from petplatform.pet.v1 import pet_pb2
from petplatform.user.v1 import user_pb2
from app import demo
from ml.fraud import store
from tests.support import REPO_ROOT
from tests.support.errors import expect
from tests.support.matching import events, until
from tests.support.platform import Api, embedded_settings, module_of, start_platform, totp_code


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
        await the_scam_listing_is_held(api)
        await demo.load_demo_data(platform.address, tmp_path)  # loaded once: the marker file
        (tmp_path / "demo-data-loaded").unlink()  # a run that stopped just before writing it does it all again
        await demo.load_demo_data(platform.address, tmp_path)
        await two_demo_users_match(api)
        await a_demo_owner_books_the_demo_walker(api)
        await the_demo_admin_bans_the_scammer(api, (("authorization", f"Bearer {admin.access_token}"),))
    finally:
        await api.channel.close()
        await platform.stop(grace=1)


async def two_demo_users_match(api: Api) -> None:
    """Alice and Bob have an adoption match and a playdate match, each with a room holding the demo lines
    in order, as both see them; a second load of the demo (a run that stopped half-way) adds nothing."""
    logins = [await api.auth.Login(auth_pb2.LoginRequest(email=email, password=demo.PASSWORD))
              for email, _ in demo.USERS[:2]]
    alice, bob = (_session(t) for t in logins)
    people = [f"users/{jwt.decode(t.access_token, options={'verify_signature': False})['sub']}" for t in logins]
    matches = (await api.matching.ListMatches(matching_pb2.ListMatchesRequest(), metadata=alice.md)).matches
    assert sorted(m.kind for m in matches) == [matching_pb2.Match.KIND_ADOPTION, matching_pb2.Match.KIND_PLAYDATE]
    assert all(sorted(m.users) == sorted(people) for m in matches)
    adoptable = next(m.pets[0] for m in matches if m.kind == matching_pb2.Match.KIND_ADOPTION)
    pet_name = (await api.pet.GetPet(pet_pb2.GetPetRequest(name=adoptable))).pet.display_name
    rooms = {r.match: r for r in (await api.chat.ListRooms(chat_pb2.ListRoomsRequest(), metadata=bob.md)).rooms}
    assert set(rooms) == {m.name for m in matches}
    for match in matches:
        room, lines = rooms[match.name], demo.CONVERSATIONS[match.kind]
        history = (await api.chat.ListMessages(chat_pb2.ListMessagesRequest(parent=room.name),
                                               metadata=alice.md)).messages
        in_order = sorted(history, key=lambda m: m.sequence)
        assert [m.sequence for m in in_order] == list(range(1, len(lines) + 1)), "each line once"
        assert [(m.sender, m.text) for m in in_order] == [(people[who], text.format(pet=pet_name))
                                                          for who, text in lines]
        assert room.last_message.name == in_order[-1].name and room.state == chat_pb2.Room.STATE_OPEN
        # Alice has read everything, Bob all but the last line: unread for him only when it is Alice's.
        mine = (await api.chat.GetRoom(chat_pb2.GetRoomRequest(name=room.name), metadata=alice.md)).room
        assert mine.unread_count == 0
        assert room.unread_count == (1 if lines[-1][0] == 0 else 0)

async def the_scam_listing_is_held(api: Api) -> None:
    """The scammer's cheap puppy, with a demo pet's photo and a gift card asked for, is held by the fraud
    service, and the photo it took from a demo pet is found reused (and no demo pet's photo matches another's)."""
    tokens = await api.auth.Login(auth_pb2.LoginRequest(email=demo.SCAMMER[0], password=demo.PASSWORD))
    scammer = f"users/{jwt.decode(tokens.access_token, options={'verify_signature': False})['sub']}"

    async def held():
        for envelope in await events(api, "fraud", "fraud.detected"):
            detected = fraud_events.FraudDetected()
            envelope.payload.Unpack(detected)
            if (detected.user == scammer and detected.subject.startswith("pets/")
                    and detected.action == fraud_events.FraudDetected.ACTION_HOLD):
                return detected
        return None
    assert (await until(held, timeout=60, what="the scam listing held")).score >= 0.8

    async def reused() -> bool:
        async with module_of(api, "fraud").db.read() as s:
            owners = (await s.execute(sa.select(store.photos.c.owner_id).where(store.photos.c.reused))).scalars().all()
        return owners == [scammer.removeprefix("users/")]
    await until(reused, what="the demo pet's photo found reused by the scammer")


async def the_demo_admin_bans_the_scammer(api: Api, staff: tuple[tuple[str, str], ...]) -> None:
    """The held scam listing waits in the moderation queue with its fraud factors; the admin (who may
    moderate) bans its owner, whose session stops working at once; the audit log shows it and verifies."""
    from petplatform.admin.v1 import admin_pb2
    from petplatform.admin.v1 import events_pb2 as admin_events
    tokens = await api.auth.Login(auth_pb2.LoginRequest(email=demo.SCAMMER[0], password=demo.PASSWORD))
    scammer = _session(tokens)
    me = f"users/{jwt.decode(tokens.access_token, options={'verify_signature': False})['sub']}"

    async def queued():
        cases = (await api.admin.ListCases(admin_pb2.ListCasesRequest(page_size=100), metadata=staff)).cases
        return next((c for c in cases if c.user == me and c.held), None)
    case = await until(queued, timeout=60, what="the scam listing's case in the queue")
    full = (await api.admin.GetCase(admin_pb2.GetCaseRequest(name=case.name), metadata=staff)).case
    assert full.evidence and full.evidence[0].factors and full.evidence[0].hold
    await api.admin.ResolveCase(admin_pb2.ResolveCaseRequest(
        name=case.name, action=admin_events.ModerationActionTaken.ACTION_BAN_USER, reason="gift card scam"),
        metadata=staff)

    async def refused():
        try:
            await api.user.GetUser(user_pb2.GetUserRequest(name="users/me"), metadata=scammer.md)
        except grpc.aio.AioRpcError as e:
            return e.code() == grpc.StatusCode.UNAUTHENTICATED
        return False
    await until(refused, what="the banned scammer's session ending")
    entries = (await api.admin.ListAuditEntries(admin_pb2.ListAuditEntriesRequest(page_size=100),
                                                metadata=staff)).audit_entries
    actions = {e.action for e in entries}
    assert {"ACTION_HOLD_LISTING", "ResolveCase"} <= actions
    assert (await api.admin.VerifyAuditLog(admin_pb2.VerifyAuditLogRequest(), metadata=staff)).intact


def _session(tokens):
    """Something with the caller's metadata, as tests.support's helpers take."""
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
