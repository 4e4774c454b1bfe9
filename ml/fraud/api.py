"""FraudService: synchronous checks of a listing, an account or a message. Users score their own content
(a service checking it on their behalf forwards their token), staff anyone's; only staff see the factors.
Each score is logged (logs.py) with the event `rpc:<Method>`."""
from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2
import grpc

from mesh import errors, principal
from mesh import pagination
from mesh.resources import decode_page_token, parse_name
from ml.fraud import model, signals, store
from ml.fraud.engine import Draft, Engine, factors_of
from ml.fraud.logs import LogEntry
from petplatform.common.v1 import access_pb2, animal_pb2
from petplatform.fraud.v1 import fraud_pb2, fraud_pb2_grpc, risk_pb2
from petplatform.pet.v1 import pet_pb2

ACTIONS = {"none": fraud_pb2.RISK_ACTION_NONE, "review": fraud_pb2.RISK_ACTION_REVIEW,
           "hold": fraud_pb2.RISK_ACTION_HOLD}
MAX_TEXT = 4000
DEFAULT_PAGE, MAX_PAGE = 50, 100
N_SPECIES = len(animal_pb2.Species.values())


def is_staff(caller: principal.Principal) -> bool:
    return caller.admitted(access_pb2.ACCESS_SUPPORT)


def assessment(a: model.Assessment, *, subject: str, user_id: str, staff: bool) -> fraud_pb2.RiskAssessment:
    return fraud_pb2.RiskAssessment(subject=subject, user=f"users/{user_id}", score=a.score, action=ACTIONS[a.action],
                                    factors=factors_of(a) if staff else [], model=a.model)


def check_listing(pet: pet_pb2.Pet) -> list[tuple[str, str]]:
    bad = []
    if not 0 <= pet.species < N_SPECIES:
        bad.append(("listing.species", "unknown enum value"))
    if len(pet.display_name) > 64:
        bad.append(("listing.display_name", "at most 64 characters"))
    if len(pet.breed) > 64:
        bad.append(("listing.breed", "at most 64 characters"))
    if len(pet.description) > 5000:
        bad.append(("listing.description", "at most 5000 characters"))
    return bad


class FraudServicer(fraud_pb2_grpc.FraudServiceServicer):
    def __init__(self, engine: Engine):
        self.engine = engine

    async def ScoreListing(self, request: fraud_pb2.ScoreListingRequest,
                           context: grpc.aio.ServicerContext) -> fraud_pb2.ScoreListingResponse:
        caller = principal.require()
        staff = is_staff(caller)
        if not request.HasField("listing"):
            raise errors.invalid_argument(("listing", "required"))
        pet = request.listing
        if bad := check_listing(pet):
            raise errors.invalid_argument(*bad)
        pet_id = parse_name(pet.name, "pets/{}", "listing.name")[0] if pet.name else None
        owner_id = caller.user_id
        if staff and pet.owner:
            owner_id = parse_name(pet.owner, "users/{}", "listing.owner")[0]
        draft = Draft(species=int(pet.species), breed=pet.breed, text=f"{pet.display_name}\n{pet.description}")
        async with self.engine.db.read() as s:
            if pet_id is not None:
                stored = await store.listing(s, pet_id)
                if stored is not None:
                    if not staff and stored.owner_id != caller.user_id:
                        raise errors.permission_denied("you can only score your own listings")
                    if staff and not pet.owner:
                        owner_id = stored.owner_id
            a = await self.engine.assess_listing(s, owner_id=owner_id, pet_id=pet_id, draft=draft)
        assert a is not None  # a draft is always scored
        subject = f"pets/{pet_id}" if pet_id else ""
        await self.engine.log(user_id=owner_id, subject=subject, event="rpc:ScoreListing", assessment=a)
        return fraud_pb2.ScoreListingResponse(assessment=assessment(a, subject=subject, user_id=owner_id, staff=staff))

    async def ScoreUser(self, request: fraud_pb2.ScoreUserRequest,
                        context: grpc.aio.ServicerContext) -> fraud_pb2.ScoreUserResponse:
        principal.require()  # ACCESS_SUPPORT: the interceptor admitted staff only
        user_id = parse_name(request.user, "users/{}", "user")[0]
        async with self.engine.db.read() as s:
            a = await self.engine.assess_user(s, user_id)
        await self.engine.log(user_id=user_id, subject=f"users/{user_id}", event="rpc:ScoreUser", assessment=a)
        return fraud_pb2.ScoreUserResponse(assessment=assessment(a, subject=f"users/{user_id}", user_id=user_id,
                                                                 staff=True))

    async def ScoreMessage(self, request: fraud_pb2.ScoreMessageRequest,
                           context: grpc.aio.ServicerContext) -> fraud_pb2.ScoreMessageResponse:
        caller = principal.require()
        staff = is_staff(caller)
        bad = []
        if not request.text.strip():
            bad.append(("text", "required"))
        elif len(request.text) > MAX_TEXT:
            bad.append(("text", f"at most {MAX_TEXT} characters"))
        if bad:
            raise errors.invalid_argument(*bad)
        if request.message:
            parse_name(request.message, "rooms/{}/messages/{}", "message")
        sender_id = caller.user_id
        if request.sender not in ("", "users/me"):
            sender_id = parse_name(request.sender, "users/{}", "sender")[0]
            if sender_id != caller.user_id and not staff:
                raise errors.permission_denied("you can only score your own messages")
        async with self.engine.db.read() as s:
            a = await self.engine.assess_message(s, sender_id=sender_id, name=request.message or None,
                                                 flags=signals.flags(request.text))
        await self.engine.log(user_id=sender_id, subject=request.message, event="rpc:ScoreMessage", assessment=a)
        return fraud_pb2.ScoreMessageResponse(assessment=assessment(a, subject=request.message, user_id=sender_id,
                                                                    staff=staff))

    async def ListRiskHistory(self, request: fraud_pb2.ListRiskHistoryRequest,
                              context: grpc.aio.ServicerContext) -> fraud_pb2.ListRiskHistoryResponse:
        principal.require()  # ACCESS_SUPPORT: the interceptor admitted staff only
        user_id = parse_name(request.user, "users/{}", "user")[0]
        if not 0 <= request.page_size <= MAX_PAGE:
            raise errors.invalid_argument(("page_size", f"must be between 1 and {MAX_PAGE} (0: {DEFAULT_PAGE})"))
        size = request.page_size or DEFAULT_PAGE
        position = decode_page_token(request.page_token, request)
        after = None
        if position is not None:
            try:
                after = (dt.datetime.fromisoformat(position[0]), str(position[1]))
            except (TypeError, ValueError, IndexError):
                raise errors.invalid_argument(("page_token", "malformed page token")) from None
        entries = await self.engine.logs.of_user(f"users/{user_id}", limit=size + 1, after=after)
        shown, token = pagination.page(entries, size, lambda e: [e.create_time.isoformat(), e.id], request)
        return fraud_pb2.ListRiskHistoryResponse(records=[record(e) for e in shown], next_page_token=token)


def record(e: LogEntry) -> fraud_pb2.RiskRecord:
    when = timestamp_pb2.Timestamp()
    when.FromDatetime(e.create_time)
    return fraud_pb2.RiskRecord(
        assessment=fraud_pb2.RiskAssessment(
            subject=e.subject, user=e.user, score=e.score, action=ACTIONS[e.action], model=e.model,
            factors=[risk_pb2.RiskFactor(code=f["code"], description=f["description"],
                                         contribution=f["contribution"]) for f in e.factors]),
        event=e.event, reviewed=e.reviewed, create_time=when)
