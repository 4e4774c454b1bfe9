"""FraudService through its public gRPC API and its events: a scam listing (cheap, a photo reused from
another account's listing, a gift card asked for in its text) is scored from pet.created/updated and held
(fraud.detected ACTION_HOLD with its factors); a chat message pushing payment off the platform is scored
from message.sent; moderators' decisions become labels; the synchronous checks and their refusals."""
from __future__ import annotations

import io
import uuid

import grpc
import numpy as np
from PIL import Image
import pytest

from ml.fraud import store
from petplatform.admin.v1 import events_pb2 as admin_events
from petplatform.chat.v1 import chat_pb2
from petplatform.chat.v1 import events_pb2 as chat_events
from petplatform.fraud.v1 import events_pb2 as fraud_events
from petplatform.fraud.v1 import fraud_pb2
from petplatform.pet.v1 import pet_pb2
from tests.support.errors import expect
from tests.support.events import Producer
from tests.support.matching import events, until
from tests.support.pets import create, dog
from tests.support.platform import Api, embedded_settings, module_of, start_platform

ADMIN_EMAIL = f"admin-{uuid.uuid4().hex[:8]}@example.com"
SCAM_TEXT = ("Adorable puppy ready for a new home, price $90. Payment by gift card only. "
             "No visits, I am abroad, he will be delivered to you.")


def photo(seed: int, fmt: str = "PNG") -> bytes:
    """A photo with structure (a perceptual hash of a flat colour says nothing)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((256, 192), Image.Resampling.BILINEAR).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
async def api(tmp_path_factory, smtp_sink):
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink,
                                                      admin_emails=[ADMIN_EMAIL], fraud_train_seconds=0))
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    await platform.stop(grace=1)


@pytest.fixture(scope="module")
async def people(api: Api):
    return await api.signup("Honest"), await api.signup("Scammer"), await api.signup_admin(ADMIN_EMAIL, "Ops")


@pytest.fixture(scope="module")
async def admin_producer(api: Api, tmp_path_factory):
    producer = await Producer.open("admin", api.platform.rt.bus, tmp_path_factory.mktemp("admin"))
    yield producer
    await producer.close()


async def detected(api: Api, subject: str, action: int) -> fraud_events.FraudDetected | None:
    for envelope in await events(api, "fraud", "fraud.detected"):
        event = fraud_events.FraudDetected()
        envelope.payload.Unpack(event)
        if event.subject == subject and event.action == action:
            return event
    return None


async def upload(api: Api, session, pet: pet_pb2.Pet, content: bytes) -> None:
    await api.pet.UploadPetPhoto(pet_pb2.UploadPetPhotoRequest(parent=pet.name, content=content), metadata=session.md)


async def test_a_scam_listing_with_a_reused_photo_is_held_with_its_factors(api: Api, people):
    honest, scammer, _ = people
    original = await create(api, honest, dog("Bella", breed="labrador", description=(
        "Bella is a calm labrador who loves walks, rehoming fee $600 because we are moving abroad.")))
    await upload(api, honest, original, photo(1))
    listing = await create(api, scammer, dog("Max", breed="labrador", description=SCAM_TEXT))
    await upload(api, scammer, listing, photo(1, "JPEG"))  # the honest owner's photo, re-encoded

    held = await until(lambda: detected(api, listing.name, fraud_events.FraudDetected.ACTION_HOLD),
                       what="the scam listing held")
    assert held.user == f"users/{scammer.user_id}" and held.score >= 0.8 and held.source_event
    codes = [f.code for f in held.factors]
    assert "off_platform_payment" in codes and "price_discount" in codes
    assert all(0 < f.contribution <= 1 and f.description for f in held.factors)
    # The photo counts once hashed: the listing's stored photo is marked reused, the honest original is not.
    async def reused():
        async with module_of(api, "fraud").db.read() as s:
            return await store.reused_counts(s, [listing.name.split("/")[1], original.name.split("/")[1]])
    await until(reused, what="the scammer's photo hashed")
    assert await reused() == {listing.name.split("/")[1]: 1}
    # The honest listing opened no case.
    assert await detected(api, original.name, fraud_events.FraudDetected.ACTION_REVIEW) is None
    assert await detected(api, original.name, fraud_events.FraudDetected.ACTION_HOLD) is None
    # One case per escalation: editing the held listing emits no second hold.
    await api.pet.UpdatePet(pet_pb2.UpdatePetRequest(
        pet=pet_pb2.Pet(name=listing.name, display_name="Maxi"), update_mask={"paths": ["display_name"]}),
        metadata=scammer.md)
    engine = module_of(api, "fraud").engine
    await until(lambda: engine.logs.of_user(f"users/{scammer.user_id}"), what="the score logged")
    holds = [e for e in await events(api, "fraud", "fraud.detected") if listing.name.encode() in e.payload.value]
    assert len({e.id for e in holds}) == len(holds) <= 2  # a review then a hold at most, never a repeat


async def test_a_message_pushing_payment_off_the_platform_is_scored_from_message_sent(api: Api, people,
                                                                                    tmp_path_factory):
    _, scammer, _ = people
    chat = await Producer.open("chat", api.platform.rt.bus, tmp_path_factory.mktemp("chat"))
    try:
        name = f"rooms/{uuid.uuid4().hex}/messages/{uuid.uuid4().hex}"
        await chat.emit(chat_events.MessageSent(message=chat_pb2.Message(
            name=name, sender=f"users/{scammer.user_id}", text="Send the deposit with Zelle or a Steam card today")))
        event = await until(lambda: detected(api, name, fraud_events.FraudDetected.ACTION_HOLD)
                            or detected(api, name, fraud_events.FraudDetected.ACTION_REVIEW), what="the message scored")
        assert "off_platform_payment" in [f.code for f in event.factors]
    finally:
        await chat.close()


async def test_synchronous_checks_answer_owners_without_factors_and_staff_with_them(api: Api, people):
    honest, scammer, admin = people
    draft = dog("Rex", breed="poodle", description="Tiny poodle, $50, pay with bitcoin, no visits")
    own = (await api.fraud.ScoreListing(fraud_pb2.ScoreListingRequest(listing=draft), metadata=scammer.md)).assessment
    assert own.action in (fraud_pb2.RISK_ACTION_REVIEW, fraud_pb2.RISK_ACTION_HOLD) and not own.factors
    assert own.user == f"users/{scammer.user_id}" and own.subject == "" and 0 <= own.score <= 1
    staff = (await api.fraud.ScoreListing(fraud_pb2.ScoreListingRequest(
        listing=pet_pb2.Pet(display_name=draft.display_name, species=draft.species, breed=draft.breed,
                            description=draft.description, owner=f"users/{scammer.user_id}")),
        metadata=admin.md)).assessment
    assert staff.factors and staff.user == f"users/{scammer.user_id}"
    honest_draft = dog("Bella", breed="labrador", description="Calm labrador, rehoming fee $550, visits welcome")
    calm = (await api.fraud.ScoreListing(fraud_pb2.ScoreListingRequest(listing=honest_draft),
                                         metadata=honest.md)).assessment
    assert calm.action == fraud_pb2.RISK_ACTION_NONE and calm.score < own.score

    user = (await api.fraud.ScoreUser(fraud_pb2.ScoreUserRequest(user=f"users/{scammer.user_id}"),
                                      metadata=admin.md)).assessment
    assert user.subject == f"users/{scammer.user_id}" and user.factors and user.score >= 0.5

    msg = (await api.fraud.ScoreMessage(fraud_pb2.ScoreMessageRequest(
        text="The shipping fee is $200 and you pay for the crate"), metadata=honest.md)).assessment
    assert msg.user == f"users/{honest.user_id}" and not msg.factors


async def test_refusals_are_client_errors(api: Api, people):
    honest, scammer, admin = people
    # The scammer's listing is held by now (admin acts on the fraud score): only its owner still lists it.
    theirs = (await api.pet.ListPets(pet_pb2.ListPetsRequest(owner=f"users/{scammer.user_id}", page_size=50),
                                     metadata=scammer.md)).pets[0]
    await expect(grpc.StatusCode.PERMISSION_DENIED, api.fraud.ScoreListing(
        fraud_pb2.ScoreListingRequest(listing=pet_pb2.Pet(name=theirs.name, display_name="x", species=1)),
        metadata=honest.md))
    await expect(grpc.StatusCode.PERMISSION_DENIED, api.fraud.ScoreUser(
        fraud_pb2.ScoreUserRequest(user=f"users/{scammer.user_id}"), metadata=honest.md))
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.fraud.ScoreMessage(fraud_pb2.ScoreMessageRequest(text="hi")))
    await expect(grpc.StatusCode.PERMISSION_DENIED, api.fraud.ScoreMessage(fraud_pb2.ScoreMessageRequest(
        text="hi", sender=f"users/{scammer.user_id}"), metadata=honest.md))
    for bad in (fraud_pb2.ScoreMessageRequest(text=""), fraud_pb2.ScoreMessageRequest(text="x" * 4001),
                fraud_pb2.ScoreMessageRequest(text="hi", message="rooms/../messages/x"),
                fraud_pb2.ScoreMessageRequest(text="hi", sender="people/1")):
        await expect(grpc.StatusCode.INVALID_ARGUMENT, api.fraud.ScoreMessage(bad, metadata=honest.md))
    for listing in (pet_pb2.Pet(display_name="x", species=99), pet_pb2.Pet(display_name="x" * 65, species=1),
                    pet_pb2.Pet(name="pets/nope", display_name="x", species=1)):
        await expect(grpc.StatusCode.INVALID_ARGUMENT, api.fraud.ScoreListing(
            fraud_pb2.ScoreListingRequest(listing=listing), metadata=honest.md))
    await expect(grpc.StatusCode.INVALID_ARGUMENT, api.fraud.ScoreListing(fraud_pb2.ScoreListingRequest(),
                                                                          metadata=honest.md))
    await expect(grpc.StatusCode.INVALID_ARGUMENT, api.fraud.ScoreUser(
        fraud_pb2.ScoreUserRequest(user="users/../x"), metadata=admin.md))


async def test_moderators_decisions_become_labels_and_mark_the_log_reviewed(api: Api, people, admin_producer):
    honest, scammer, admin = people
    module = module_of(api, "fraud")
    subject = f"users/{scammer.user_id}"
    decision = admin_events.ModerationActionTaken(
        case=f"cases/{uuid.uuid4().hex}", subject=subject, user=subject, actor=f"users/{admin.user_id}",
        action=admin_events.ModerationActionTaken.ACTION_BAN_USER, reason="gift card scam", upheld=True)
    ids = await admin_producer.emit(decision)
    await admin_producer.replay(ids[0])  # a redelivery counts once

    async def labelled():
        async with module.db.read() as s:
            row = await store.subject(s, subject)
            acc = await store.account(s, scammer.user_id)
        return row is not None and row.label == 1 and acc is not None and acc.upheld_reports == 1
    await until(labelled, what="the label recorded")
    await until(lambda: _reviewed(module, subject), what="the log marked reviewed")
    # An automatic hold (no actor) is the scorer's own output: no label.
    auto = admin_events.ModerationActionTaken(case=f"cases/{uuid.uuid4().hex}", subject=f"users/{honest.user_id}",
                                              user=f"users/{honest.user_id}", upheld=True,
                                              action=admin_events.ModerationActionTaken.ACTION_HOLD_LISTING)
    await admin_producer.emit(auto)
    trained = await module.engine.train()
    assert trained.samples >= 3 and trained.labels >= 1 and trained.classifier is None  # too few labels yet
    async with module.db.read() as s:
        assert (await store.subject(s, f"users/{honest.user_id}")) is None


async def _reviewed(module, subject: str) -> bool:
    return any(e.reviewed for e in await module.engine.logs.of_user(subject) if e.subject == subject)


async def test_on_postgresql_rabbitmq_and_s3(real_api: Api, tmp_path):
    """The scam listing held on the real profile: the store's migrations on PostgreSQL, events through
    RabbitMQ, photos read from S3 (MinIO)."""
    honest, scammer = await real_api.signup("Honest"), await real_api.signup("Scammer")
    original = await create(real_api, honest, dog("Bella", description="Calm labrador, rehoming fee $600"))
    await upload(real_api, honest, original, photo(7))
    listing = await create(real_api, scammer, dog("Max", breed="labrador", description=SCAM_TEXT))
    await upload(real_api, scammer, listing, photo(7, "JPEG"))
    held = await until(lambda: detected(real_api, listing.name, fraud_events.FraudDetected.ACTION_HOLD),
                       timeout=30, what="the scam listing held")
    assert held.source_event

    async def reused():
        async with module_of(real_api, "fraud").db.read() as s:
            return await store.reused_counts(s, [listing.name.split("/")[1]])
    assert await until(reused, timeout=30, what="the photo hashed") == {listing.name.split("/")[1]: 1}


async def test_staff_read_an_accounts_risk_history_page_by_page(api: Api, people):
    honest, scammer, admin = people
    module = module_of(api, "fraud")
    await module.engine.settle()
    request = fraud_pb2.ListRiskHistoryRequest(user=f"users/{scammer.user_id}", page_size=2)
    first = await api.fraud.ListRiskHistory(request, metadata=admin.md)
    assert len(first.records) == 2 and first.next_page_token
    assert first.records[0].create_time.ToDatetime() >= first.records[1].create_time.ToDatetime()
    records = list(first.records)
    token = first.next_page_token
    while token:
        page = await api.fraud.ListRiskHistory(fraud_pb2.ListRiskHistoryRequest(
            user=request.user, page_size=2, page_token=token), metadata=admin.md)
        records += page.records
        token = page.next_page_token
    assert len({(r.create_time.ToNanoseconds(), r.event, r.assessment.subject) for r in records}) == len(records)
    held = [r for r in records if r.assessment.action == fraud_pb2.RISK_ACTION_HOLD and r.assessment.factors]
    assert held and all(r.assessment.user == f"users/{scammer.user_id}" for r in records)
    assert any(r.event == "rpc:ScoreListing" for r in records)

    await expect(grpc.StatusCode.PERMISSION_DENIED, api.fraud.ListRiskHistory(request, metadata=honest.md))
    for bad in (fraud_pb2.ListRiskHistoryRequest(user=request.user, page_size=101),
                fraud_pb2.ListRiskHistoryRequest(user=request.user, page_token="forged.token"),
                fraud_pb2.ListRiskHistoryRequest(user=f"users/{honest.user_id}", page_token=first.next_page_token)):
        await expect(grpc.StatusCode.INVALID_ARGUMENT, api.fraud.ListRiskHistory(bad, metadata=admin.md))
