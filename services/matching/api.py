"""MatchingService: the feed, swipes, adoption interests, playdate and adoption matches, blocks.

The feed reads matching's own copy of the pets (kept from pet events, module.py), so a request never
calls the pet service; it calls the user service for the caller's preferences and the recommender for
the order, both with the caller's own authorization: there is no service-to-service identity yet."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
import datetime as dt
import logging
from typing import TypeVar

import grpc
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import errors, pagination, principal
from mesh.blobs import BlobStore
from mesh.events import emit
from mesh.principal import Principal
from mesh.resources import decode_page_token, encode_page_token, new_id, page_size, parse_name, timestamp
from mesh.sql import Database, Row, utcnow
from petplatform.matching.v1 import events_pb2 as matching_events
from petplatform.matching.v1 import matching_pb2, matching_pb2_grpc
from petplatform.pet.v1 import pet_pb2
from petplatform.user.v1 import user_pb2, user_pb2_grpc
from services.matching import domain, store
from services.matching.ranking import RANKINGS, Ranker

log = logging.getLogger(__name__)

PET_TYPE = "pet.petplatform.dev/Pet"
MATCH_TYPE = "matching.petplatform.dev/Match"
INTEREST_TYPE = "matching.petplatform.dev/Interest"
PEER_DEADLINE_SECONDS = 2.0
# A swipe racing another on the same pair loses on a unique constraint and is tried again, then sees it.
ATTEMPTS = 3

Interest = matching_pb2.Interest
Match = matching_pb2.Match
Ranking = matching_pb2.GetFeedResponse.Ranking
T = TypeVar("T")


def swipe_message(r: Row) -> matching_pb2.Swipe:
    return matching_pb2.Swipe(name=f"swipes/{r.id}", user=f"users/{r.user_id}", pet=f"pets/{r.pet_id}",
                              action=r.action, acting_pet=f"pets/{r.acting_pet_id}" if r.acting_pet_id else "",
                              create_time=timestamp(r.create_time))


def interest_message(r: Row) -> Interest:
    return Interest(name=f"interests/{r.id}", pet=f"pets/{r.pet_id}", user=f"users/{r.user_id}",
                    owner=f"users/{r.owner_id}", super_like=r.super_like, state=r.state,
                    match=f"matches/{r.match_id}" if r.match_id else "", create_time=timestamp(r.create_time),
                    update_time=timestamp(r.update_time))


def match_message(r: Row) -> Match:
    return Match(name=f"matches/{r.id}", kind=r.kind, users=[f"users/{r.user_a}", f"users/{r.user_b}"],
                 pets=[f"pets/{p}" for p in (r.pet_a, r.pet_b) if p], state=r.state,
                 interest=f"interests/{r.interest_id}" if r.interest_id else "", create_time=timestamp(r.create_time),
                 end_time=timestamp(r.end_time))


def authorization(context: grpc.aio.ServicerContext) -> str:
    """The caller's own credentials, forwarded to the peers this service calls on their behalf."""
    return next((v for k, v in context.invocation_metadata() or () if k == "authorization" and isinstance(v, str)),
                "")


def check_states(values: Sequence[int], enum: type, field: str = "states") -> None:
    if any(v == 0 or v not in enum.values() for v in values):  # type: ignore[attr-defined]
        raise errors.invalid_argument((field, "must hold only defined, specified states"))


async def retried(attempt: Callable[[], Awaitable[T]]) -> T:
    """Runs a writing transaction again when a concurrent one won a unique constraint: the next try
    sees what it wrote (the same swipe, the same match) and answers with it."""
    for n in range(ATTEMPTS):
        try:
            return await attempt()
        except IntegrityError:
            if n == ATTEMPTS - 1:
                raise
            log.info("lost a race on a unique constraint; trying again")
    raise AssertionError("unreachable")


class MatchingServicer(matching_pb2_grpc.MatchingServiceServicer):
    def __init__(self, db: Database, *, ranker: Ranker, users: Callable[[], grpc.aio.Channel], blobs: BlobStore,
                 daily_swipe_limit: int):
        self.db = db
        self.ranker = ranker
        self.users = users
        self.blobs = blobs
        self.daily_swipe_limit = daily_swipe_limit

    # --- the feed ---

    async def GetFeed(self, request: matching_pb2.GetFeedRequest,
                      context: grpc.aio.ServicerContext) -> matching_pb2.GetFeedResponse:
        caller = principal.require()
        domain.check_feed_request(request)
        size = request.page_size or domain.DEFAULT_FEED_SIZE
        # Offsets into one ranking, frozen at the first page: what the caller swiped or what was
        # listed since does not shift the pages that follow (cards swiped meanwhile are left out).
        position = decode_page_token(request.page_token, request)
        offset, as_of = (int(position[0]), dt.datetime.fromisoformat(position[1])) if position else (0, utcnow())
        acting_id = parse_name(request.acting_pet, "pets/{}", "acting_pet")[0] if request.acting_pet else ""
        token = authorization(context)
        prefs = await self._preferences(token)
        f = domain.filters(request, prefs)
        born_after, born_by = domain.birth_bounds(f, as_of.date())
        async with self.db.read() as s:
            if acting_id:
                await self._own_pet(s, caller, acting_id, request.acting_pet)
            rows = await store.feed_candidates(
                s, user_id=caller.user_id, acting_pet_id=acting_id, species=f.species, sizes=f.sizes,
                listing=pet_pb2.Pet.LISTING_PLAYDATES if acting_id else pet_pb2.Pet.LISTING_ADOPTION,
                born_after=born_after, born_on_or_before=born_by, box=domain.latitude_box(f), as_of=as_of,
                limit=domain.MAX_CANDIDATES)
        candidates: dict[str, tuple[Row, float | None]] = {}
        for r in rows:
            km = domain.distance_km(f.location, r.latitude, r.longitude) if (
                f.location is not None and r.latitude is not None) else None
            if f.radius_km and f.location is not None and (km is None or km > f.radius_km):
                continue
            candidates[f"pets/{r.id}"] = (r, km)
        order, ranking = await self._rank(candidates, prefs, f, token, offset + size + 1)
        page = order[offset:offset + size]
        async with self.db.read() as s:
            gone = await store.swiped_since(s, user_id=caller.user_id, acting_pet_id=acting_id, since=as_of,
                                            pet_ids=[candidates[name][0].id for name, _, _ in page])
        most_likes = max((r.likes for r, _ in candidates.values()), default=0)
        cards = []
        for name, score, collaborative in page:
            row, km = candidates[name]
            if row.id in gone:
                continue
            pet = await self._card_pet(row, km, as_of.date())
            cards.append(matching_pb2.FeedCard(pet=pet, score=round(score, 6), reasons=domain.reasons(
                pet, km=km, prefs=prefs, collaborative=collaborative,
                popular=bool(most_likes) and row.likes * 2 >= most_likes)))
        RANKINGS.labels(Ranking.Name(ranking).removeprefix("RANKING_").lower()).inc()
        more = len(order) > offset + size
        return matching_pb2.GetFeedResponse(
            cards=cards, ranking=ranking,
            next_page_token=encode_page_token([offset + size, as_of.isoformat()], request) if more else "")

    async def _preferences(self, token: str) -> user_pb2.Preferences:
        """The caller's stated preferences (their own profile, read with their own token)."""
        try:
            user = (await user_pb2_grpc.UserServiceStub(self.users()).GetUser(
                user_pb2.GetUserRequest(name="users/me"), timeout=PEER_DEADLINE_SECONDS,
                metadata=(("authorization", token),))).user
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:  # the profile is made from user.created, maybe not yet
                return user_pb2.Preferences()
            log.warning("user service failed: %s %s", e.code().name, e.details())
            raise errors.ApiError(grpc.StatusCode.UNAVAILABLE, "your preferences could not be read; try again",
                                  "PREFERENCES_UNAVAILABLE") from None
        return user.preferences

    async def _rank(self, candidates: dict[str, tuple[Row, float | None]], prefs: user_pb2.Preferences,
                    f: domain.Filters, token: str,
                    needed: int) -> tuple[list[tuple[str, float, float]], matching_pb2.GetFeedResponse.Ranking]:
        """(pet name, score, collaborative part) best first, and how they were ranked."""
        asked = user_pb2.Preferences()
        asked.CopyFrom(prefs)
        asked.ClearField("species")
        asked.ClearField("sizes")
        asked.species.extend(f.species)  # type: ignore[arg-type]  # enum values as ints
        asked.sizes.extend(f.sizes)  # type: ignore[arg-type]
        asked.min_age_months, asked.max_age_months, asked.radius_km = f.min_age_months, f.max_age_months, f.radius_km
        if f.location is not None:
            asked.location.CopyFrom(f.location)
        ranked = await self.ranker.rank(pets=sorted(candidates), preferences=asked, authorization=token,
                                        max_results=needed)
        if ranked is not None:
            return [(p.pet, p.score, p.collaborative) for p in ranked if p.pet in candidates], \
                Ranking.RANKING_PERSONALISED
        most = max((r.likes for r, _ in candidates.values()), default=0)
        scored = [(name, domain.fallback_score(likes=r.likes, most_likes=most, km=km), 0.0)
                  for name, (r, km) in candidates.items()]
        scored.sort(key=lambda c: (-c[1], c[0]))
        return scored, Ranking.RANKING_FALLBACK

    async def _card_pet(self, row: Row, km: float | None, today: dt.date) -> pet_pb2.Pet:
        pet = pet_pb2.Pet.FromString(row.message)
        if pet.HasField("birth_date"):  # the age as of today, not as of the pet's last event
            born = dt.date(pet.birth_date.year, pet.birth_date.month, pet.birth_date.day or 1)
            pet.age_months = domain.months_between(born, today)
        pet.distance_km = round(km, 3) if km is not None else 0
        for photo in pet.photos:  # signed links expire: made afresh (a photo's name is its blob key)
            photo.uri = await self.blobs.url(photo.name)
        return pet

    async def _own_pet(self, s: AsyncSession, caller: Principal, pet_id: str, name: str,
                       field: str = "acting_pet") -> Row:
        row = await store.find_pet(s, pet_id)
        if row is None or row.deleted:
            raise errors.not_found(PET_TYPE, name)
        if row.owner_id != caller.user_id:
            raise errors.permission_denied(f"{field} must be one of your own pets", "NOT_OWNER")
        return row

    # --- swipes ---

    async def Swipe(self, request: matching_pb2.SwipeRequest,
                    context: grpc.aio.ServicerContext) -> matching_pb2.SwipeResponse:
        caller = principal.require()
        domain.check_swipe(request)
        (pet_id,) = parse_name(request.pet, "pets/{}", "pet")
        acting_id = parse_name(request.acting_pet, "pets/{}", "acting_pet")[0] if request.acting_pet else ""

        async def attempt() -> matching_pb2.SwipeResponse:
            async with self.db.transaction() as s:
                return await self._swipe(s, caller, request, pet_id, acting_id)
        return await retried(attempt)

    async def _swipe(self, s: AsyncSession, caller: Principal, request: matching_pb2.SwipeRequest, pet_id: str,
                     acting_id: str) -> matching_pb2.SwipeResponse:
        # Both pets locked first: a like-back in flight waits here, then sees this swipe.
        locked = await store.lock_pets(s, [pet_id, acting_id] if acting_id else [pet_id])
        existing = await store.find_active_swipe(s, user_id=caller.user_id, pet_id=pet_id, acting_pet_id=acting_id)
        if existing is not None:
            return await self._swipe_result(s, existing)
        pet = locked.get(pet_id)
        if pet is None or pet.deleted or pet.hidden or await store.is_blocked(s, caller.user_id, pet.owner_id):
            raise errors.not_found(PET_TYPE, request.pet)
        if pet.owner_id == caller.user_id:
            raise errors.invalid_argument(("pet", "you cannot swipe your own pet"), reason="OWN_PET")
        if pet.adopted or pet.status == pet_pb2.Pet.STATUS_ADOPTED:
            raise errors.failed_precondition("this pet has been adopted", "PET_ADOPTED")
        playdate = pet.listing == pet_pb2.Pet.LISTING_PLAYDATES
        if playdate and not acting_id:
            raise errors.invalid_argument(("acting_pet", "required for a pet open to playdates: the pet of yours "
                                                         "the swipe is for"))
        if not playdate and acting_id:
            raise errors.invalid_argument(("acting_pet", "only for pets open to playdates; this one is listed "
                                                         "for adoption"))
        if playdate:
            await self._own_pet(s, caller, acting_id, request.acting_pet)
        now = utcnow()
        if not await store.take_swipe_slot(s, user_id=caller.user_id, day=domain.swipe_day(now),
                                           limit=self.daily_swipe_limit):
            raise errors.resource_exhausted(f"at most {self.daily_swipe_limit} swipes a day", "SWIPE_LIMIT",
                                            domain.seconds_to_next_day(now), limit=self.daily_swipe_limit)
        swipe_id = new_id()
        await store.add_swipe(s, id=swipe_id, user_id=caller.user_id, pet_id=pet_id, acting_pet_id=acting_id,
                              owner_id=pet.owner_id, action=request.action, create_time=now)
        row = await self._one(store.find_active_swipe(s, user_id=caller.user_id, pet_id=pet_id,
                                                      acting_pet_id=acting_id))
        swipe = swipe_message(row)
        await emit(s, matching_events.SwipeRecorded(swipe=swipe))
        out = matching_pb2.SwipeResponse(swipe=swipe)
        if request.action not in store.LIKES:
            return out
        await store.add_likes(s, pet_id, 1)
        if not playdate:
            interest_id = new_id()
            super_like = request.action == matching_pb2.SWIPE_ACTION_SUPER_LIKE
            await store.add_interest(s, id=interest_id, pet_id=pet_id, user_id=caller.user_id, owner_id=pet.owner_id,
                                     swipe_id=swipe_id, super_like=super_like, state=Interest.STATE_PENDING,
                                     rank=domain.interest_rank(super_like, now), create_time=now, update_time=now)
            out.interest.CopyFrom(await self._interest_changed(s, interest_id))
            return out
        back = await store.find_like_back(s, user_id=pet.owner_id, pet_id=acting_id, acting_pet_id=pet_id)
        if back is not None:
            out.match.CopyFrom(await self._new_match(
                s, kind=Match.KIND_PLAYDATE, users=(pet.owner_id, caller.user_id), pets=(pet_id, acting_id),
                pair_key=domain.playdate_key(pet_id, acting_id), now=now))
        return out

    async def _swipe_result(self, s: AsyncSession, row: Row) -> matching_pb2.SwipeResponse:
        """What a swipe made: the answer to the same swipe again."""
        out = matching_pb2.SwipeResponse(swipe=swipe_message(row))
        interest = await store.find_interest_of_swipe(s, row.id)
        if interest is not None:
            out.interest.CopyFrom(interest_message(interest))
        if row.acting_pet_id:
            match = await store.find_match_by_key(s, domain.playdate_key(row.pet_id, row.acting_pet_id))
            if match is not None:
                out.match.CopyFrom(match_message(match))
        elif interest is not None and interest.match_id:
            out.match.CopyFrom(match_message(await self._one(store.find_match(s, interest.match_id))))
        return out

    async def UndoSwipe(self, request: matching_pb2.UndoSwipeRequest,
                        context: grpc.aio.ServicerContext) -> matching_pb2.UndoSwipeResponse:
        caller = principal.require()
        async with self.db.transaction() as s:
            last = await store.last_active_swipe(s, caller.user_id)
            if last is None:
                raise errors.failed_precondition("you have no swipe to undo", "NOTHING_TO_UNDO")
            # As a swipe does: a like-back in flight on the same pets is applied before or after, not beside.
            await store.lock_pets(s, [last.pet_id, last.acting_pet_id] if last.acting_pet_id else [last.pet_id])
            interest = await store.find_interest_of_swipe(s, last.id)
            matched = (interest is not None and interest.state == Interest.STATE_ACCEPTED) or (
                last.acting_pet_id and await store.find_match_by_key(
                    s, domain.playdate_key(last.pet_id, last.acting_pet_id)) is not None)
            if matched:
                raise errors.failed_precondition("this swipe made a match: unmatch instead", "ALREADY_MATCHED")
            await store.undo_swipe(s, last.id, new_id())
            if last.action in store.LIKES:
                await store.add_likes(s, last.pet_id, -1)
            if interest is not None and interest.state == Interest.STATE_PENDING:
                await store.set_interest(s, interest.id, state=Interest.STATE_WITHDRAWN, update_time=utcnow())
                await self._interest_changed(s, interest.id)
            swipe = swipe_message(last)
            await emit(s, matching_events.SwipeUndone(swipe=swipe))
        return matching_pb2.UndoSwipeResponse(swipe=swipe)

    # --- interests ---

    async def ListInterests(self, request: matching_pb2.ListInterestsRequest,
                            context: grpc.aio.ServicerContext) -> matching_pb2.ListInterestsResponse:
        caller = principal.require()
        size = page_size(request.page_size)
        position = decode_page_token(request.page_token, request)
        if request.direction not in matching_pb2.ListInterestsRequest.Direction.values():
            raise errors.invalid_argument(("direction", "unknown value"))
        check_states(request.states, Interest.State)
        pet_id = parse_name(request.pet, "pets/{}", "pet")[0] if request.pet else ""
        received = request.direction != matching_pb2.ListInterestsRequest.DIRECTION_SENT
        async with self.db.read() as s:
            rows = await store.list_interests(
                s, user_id=caller.user_id, received=received, pet_id=pet_id,
                states=list(request.states) or [Interest.STATE_PENDING],
                after=(position[0], position[1]) if position else None, size=size)
        rows, token = pagination.page(rows, size, lambda r: [r.rank, r.id], request)
        return matching_pb2.ListInterestsResponse(interests=[interest_message(r) for r in rows],
                                                  next_page_token=token)

    async def RespondToInterest(self, request: matching_pb2.RespondToInterestRequest,
                                context: grpc.aio.ServicerContext) -> matching_pb2.RespondToInterestResponse:
        caller = principal.require()
        (interest_id,) = parse_name(request.name, "interests/{}")
        Decision = matching_pb2.RespondToInterestRequest
        if request.decision not in (Decision.DECISION_ACCEPT, Decision.DECISION_DECLINE):
            raise errors.invalid_argument(("decision", "must be DECISION_ACCEPT or DECISION_DECLINE"))
        accept = request.decision == Decision.DECISION_ACCEPT

        async def attempt() -> matching_pb2.RespondToInterestResponse:
            async with self.db.transaction() as s:
                return await self._respond(s, caller, request.name, interest_id, accept)
        return await retried(attempt)

    async def _respond(self, s: AsyncSession, caller: Principal, name: str, interest_id: str,
                       accept: bool) -> matching_pb2.RespondToInterestResponse:
        # The interest's row lock makes a retried or concurrent accept wait, then see the first one's match.
        row = await store.find_interest(s, interest_id, lock=True)
        if row is None or caller.user_id not in (row.owner_id, row.user_id):
            raise errors.not_found(INTEREST_TYPE, name)
        if caller.user_id != row.owner_id:
            raise errors.permission_denied("only the pet's owner answers an interest in it", "NOT_OWNER")
        wanted = Interest.STATE_ACCEPTED if accept else Interest.STATE_DECLINED
        if row.state == wanted:  # the same answer again: the same result
            out = matching_pb2.RespondToInterestResponse(interest=interest_message(row))
            if row.match_id:
                out.match.CopyFrom(match_message(await self._one(store.find_match(s, row.match_id))))
            return out
        if row.state != Interest.STATE_PENDING:
            raise errors.failed_precondition(f"this interest is {Interest.State.Name(row.state)} already",
                                             "INTEREST_CLOSED", state=Interest.State.Name(row.state))
        now = utcnow()
        out = matching_pb2.RespondToInterestResponse()
        if accept:
            pet = (await store.lock_pets(s, [row.pet_id])).get(row.pet_id)
            if (pet is None or pet.deleted or pet.hidden or pet.adopted
                    or pet.status == pet_pb2.Pet.STATUS_ADOPTED):
                raise errors.failed_precondition("this pet is no longer listed", "PET_UNAVAILABLE")
            match = await self._new_match(s, kind=Match.KIND_ADOPTION, users=(row.owner_id, row.user_id),
                                          pets=(row.pet_id,), interest_id=interest_id,
                                          pair_key=domain.adoption_key(interest_id), now=now)
            out.match.CopyFrom(match)
            await store.set_interest(s, interest_id, state=wanted, match_id=match.name.split("/")[1], update_time=now)
        else:
            await store.set_interest(s, interest_id, state=wanted, update_time=now)
        out.interest.CopyFrom(await self._interest_changed(s, interest_id))
        return out

    # --- matches ---

    async def ListMatches(self, request: matching_pb2.ListMatchesRequest,
                          context: grpc.aio.ServicerContext) -> matching_pb2.ListMatchesResponse:
        caller = principal.require()
        size = page_size(request.page_size)
        position = decode_page_token(request.page_token, request)
        check_states(request.states, Match.State)
        async with self.db.read() as s:
            rows = await store.list_matches(
                s, user_id=caller.user_id, states=list(request.states) or [Match.STATE_ACTIVE],
                after=(dt.datetime.fromisoformat(position[0]), position[1]) if position else None, size=size)
        rows, token = pagination.page(rows, size, lambda r: [r.create_time.isoformat(), r.id], request)
        return matching_pb2.ListMatchesResponse(matches=[match_message(r) for r in rows], next_page_token=token)

    async def GetMatch(self, request: matching_pb2.GetMatchRequest,
                       context: grpc.aio.ServicerContext) -> matching_pb2.GetMatchResponse:
        (match_id,) = parse_name(request.name, "matches/{}")
        async with self.db.read() as s:
            row = await self._match(s, principal.require(), match_id, request.name, admin=True)
        return matching_pb2.GetMatchResponse(match=match_message(row))

    async def Unmatch(self, request: matching_pb2.UnmatchRequest,
                      context: grpc.aio.ServicerContext) -> matching_pb2.UnmatchResponse:
        (match_id,) = parse_name(request.name, "matches/{}")
        async with self.db.transaction() as s:
            row = await self._match(s, principal.require(), match_id, request.name, lock=True)
            if row.state == Match.STATE_ADOPTED:
                raise errors.failed_precondition("the adoption is complete; it cannot be unmatched",
                                                 "ALREADY_ADOPTED")
            if row.state == Match.STATE_ACTIVE:
                await self._end_match(s, row, matching_events.MatchEnded.REASON_UNMATCHED)
            row = await self._one(store.find_match(s, match_id))
        return matching_pb2.UnmatchResponse(match=match_message(row))

    async def _match(self, s: AsyncSession, caller: Principal, match_id: str, name: str, *, admin: bool = False,
                     lock: bool = False) -> Row:
        """The match, if the caller takes part in it (or, with `admin`, is an admin); NOT_FOUND otherwise:
        to anyone else it does not exist."""
        row = await store.find_match(s, match_id, lock=lock)
        if row is None or not (caller.user_id in (row.user_a, row.user_b) or (admin and caller.is_admin)):
            raise errors.not_found(MATCH_TYPE, name)
        return row

    async def _new_match(self, s: AsyncSession, *, kind: int, users: tuple[str, str], pets: tuple[str, ...],
                         pair_key: str, now: dt.datetime, interest_id: str = "") -> Match:
        """The pair's match and its match.created, made once: the unique pair_key stops a second (the
        transaction then fails and is tried again, finding this one)."""
        existing = await store.find_match_by_key(s, pair_key)
        if existing is not None:
            return match_message(existing)
        match_id = new_id()
        await store.add_match(s, id=match_id, kind=kind, user_a=users[0], user_b=users[1], pet_a=pets[0],
                              pet_b=pets[1] if len(pets) > 1 else "", interest_id=interest_id,
                              state=Match.STATE_ACTIVE, pair_key=pair_key, create_time=now)
        match = match_message(await self._one(store.find_match(s, match_id)))
        await emit(s, matching_events.MatchCreated(match=match))
        return match

    async def _end_match(self, s: AsyncSession, row: Row, reason: int) -> None:
        await store.set_match(s, row.id, state=Match.STATE_ENDED, end_time=utcnow())
        ended = match_message(await self._one(store.find_match(s, row.id)))
        await emit(s, matching_events.MatchEnded(match=ended, reason=reason))  # type: ignore[arg-type]

    async def _interest_changed(self, s: AsyncSession, interest_id: str) -> Interest:
        interest = interest_message(await self._one(store.find_interest(s, interest_id)))
        await emit(s, matching_events.InterestChanged(interest=interest))
        return interest

    # --- blocks and adoptions ---

    async def BlockUser(self, request: matching_pb2.BlockUserRequest,
                        context: grpc.aio.ServicerContext) -> matching_pb2.BlockUserResponse:
        caller = principal.require()
        (other,) = parse_name(request.name, "users/{}")
        if other == caller.user_id:
            raise errors.invalid_argument(("name", "you cannot block yourself"))
        async with self.db.transaction() as s:
            if not await store.add_block(s, blocker_id=caller.user_id, blocked_id=other, create_time=utcnow()):
                return matching_pb2.BlockUserResponse()  # blocked already: nothing changes
            pair = (caller.user_id, other)
            for m in await store.active_matches(s, between=pair):
                await self._end_match(s, m, matching_events.MatchEnded.REASON_BLOCKED)
            for i in await store.open_interests(s, between=pair, states=[Interest.STATE_PENDING]):
                await store.set_interest(s, i.id, state=Interest.STATE_WITHDRAWN, update_time=utcnow())
                await self._interest_changed(s, i.id)
            await emit(s, matching_events.UserBlocked(user=caller.resource_name, blocked_user=request.name))
        return matching_pb2.BlockUserResponse()

    async def CompleteAdoption(self, request: matching_pb2.CompleteAdoptionRequest,
                               context: grpc.aio.ServicerContext) -> matching_pb2.CompleteAdoptionResponse:
        caller = principal.require()
        (match_id,) = parse_name(request.name, "matches/{}")
        async with self.db.transaction() as s:
            row = await self._match(s, caller, match_id, request.name, lock=True)
            if row.kind != Match.KIND_ADOPTION:
                raise errors.failed_precondition("only an adoption match completes an adoption", "NOT_ADOPTION")
            if caller.user_id != row.user_a:
                raise errors.permission_denied("only the pet's owner completes its adoption", "NOT_OWNER")
            if row.state == Match.STATE_ADOPTED:  # done already: once, however often it is called
                return matching_pb2.CompleteAdoptionResponse(match=match_message(row))
            if row.state != Match.STATE_ACTIVE:
                raise errors.failed_precondition("this match has ended", "MATCH_ENDED")
            # The pet's lock orders two adoptions of one pet through different matches: the second sees the first.
            pet = (await store.lock_pets(s, [row.pet_a])).get(row.pet_a)
            if pet is None or pet.deleted:
                raise errors.failed_precondition("this pet is no longer listed", "PET_UNAVAILABLE")
            if pet.adopted:
                raise errors.failed_precondition("this pet was adopted through another match", "PET_ADOPTED")
            now = utcnow()
            await store.set_match(s, match_id, state=Match.STATE_ADOPTED, end_time=now)
            await store.mark_adopted(s, row.pet_a)
            for other in await store.active_matches(s, pet_id=row.pet_a, kind=Match.KIND_ADOPTION):
                await self._end_match(s, other, matching_events.MatchEnded.REASON_PET_ADOPTED)
                await store.set_interest(s, other.interest_id, state=Interest.STATE_DECLINED, update_time=now)
                await self._interest_changed(s, other.interest_id)
            for i in await store.open_interests(s, pet_id=row.pet_a, states=[Interest.STATE_PENDING]):
                await store.set_interest(s, i.id, state=Interest.STATE_DECLINED, update_time=now)
                await self._interest_changed(s, i.id)
            adopted = match_message(await self._one(store.find_match(s, match_id)))
            await emit(s, matching_events.AdoptionCompleted(match=adopted))
        return matching_pb2.CompleteAdoptionResponse(match=adopted)

    @staticmethod
    async def _one(found: Awaitable[Row | None]) -> Row:
        """A row this transaction has just read or written, so it is there."""
        row = await found
        assert row is not None
        return row
