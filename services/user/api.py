"""UserService: profiles and preferences, reviews between users, trust scores."""
from __future__ import annotations

import datetime as dt

from google.protobuf import field_mask_pb2, json_format
from google.type import latlng_pb2
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mesh import errors, principal
from mesh.resources import (check_display_name, check_mask, check_text, decode_page_token, encode_page_token,
                            new_id, page_size, parse_name, timestamp)
from mesh.sql import Database, utcnow
from petplatform.common.v1 import animal_pb2
from petplatform.user.v1 import user_pb2, user_pb2_grpc
from services.user.domain import Standing, Trust, may_review, review_weight, trust_score
from services.user.store import profiles, reviews

USER_TYPE = "user.petplatform.dev/User"
PREFERENCE_FIELDS = [f.name for f in user_pb2.Preferences.DESCRIPTOR.fields]
UPDATABLE = {"display_name", "bio", "location", "preferences", *(f"preferences.{f}" for f in PREFERENCE_FIELDS)}
MAX_AGE_MONTHS = 600
MAX_RADIUS_KM = 500


def resolve_user(name: str, field: str = "name", suffix: str = "") -> str:
    """The user id in `users/{id}{suffix}`; `users/me` is the caller."""
    if name == f"users/me{suffix}":
        return principal.require().user_id
    return parse_name(name, "users/{}" + suffix, field)[0]


def standing(row) -> Standing:
    """A profile row, or a row with the same columns, as the review rules see it."""
    return Standing(email_verified=row.email_verified, create_time=row.create_time,
                    upheld_reports=row.upheld_reports)


def check_location(violations: list, field: str, loc: latlng_pb2.LatLng) -> None:
    if not -90 <= loc.latitude <= 90:
        violations.append((f"{field}.latitude", "must be between -90 and 90"))
    if not -180 <= loc.longitude <= 180:
        violations.append((f"{field}.longitude", "must be between -180 and 180"))


def check_preferences(violations: list, p: user_pb2.Preferences) -> None:
    for field, values, enum in (("species", p.species, animal_pb2.Species), ("sizes", p.sizes, animal_pb2.PetSize)):
        if any(v == 0 or v not in enum.values() for v in values):
            violations.append((f"preferences.{field}", "must hold only defined, specified values"))
    if p.home_type not in animal_pb2.HomeType.values():
        violations.append(("preferences.home_type", "unknown value"))
    for field in ("min_age_months", "max_age_months"):
        if not 0 <= getattr(p, field) <= MAX_AGE_MONTHS:
            violations.append((f"preferences.{field}", f"must be between 0 and {MAX_AGE_MONTHS}"))
    if p.max_age_months and p.min_age_months > p.max_age_months:
        violations.append(("preferences.min_age_months", "must not exceed max_age_months"))
    if not 0 <= p.radius_km <= MAX_RADIUS_KM:
        violations.append(("preferences.radius_km", f"must be between 0 and {MAX_RADIUS_KM}"))
    check_location(violations, "preferences.location", p.location)


class UserServicer(user_pb2_grpc.UserServiceServicer):
    def __init__(self, db: Database):
        self.db = db

    async def GetUser(self, request, context):
        user_id = resolve_user(request.name)
        async with self.db.transaction() as s:
            return user_pb2.GetUserResponse(user=await self._load(s, user_id))

    async def UpdateUser(self, request, context):
        user_id = resolve_user(request.user.name, "user.name")
        caller = principal.require()
        if user_id != caller.user_id and not caller.is_admin:
            raise errors.permission_denied("you can only change your own profile")
        paths = check_mask(request.update_mask, UPDATABLE)
        async with self.db.transaction() as s:
            user = await self._load(s, user_id, with_preferences=True)
            field_mask_pb2.FieldMask(paths=sorted(paths)).MergeMessage(
                request.user, user, replace_message_field=True, replace_repeated_field=True)
            violations: list = []
            if "display_name" in paths:  # a stored name from before a rule changed does not block other fields
                check_display_name(violations, "user.display_name", user.display_name.strip())
            check_text(violations, "user.bio", user.bio, max_len=2000)
            check_location(violations, "user.location", user.location)
            check_preferences(violations, user.preferences)
            if violations:
                raise errors.invalid_argument(*violations)
            await s.execute(profiles.update().where(profiles.c.user_id == user_id).values(
                display_name=user.display_name.strip(), bio=user.bio,
                latitude=user.location.latitude if user.HasField("location") else None,
                longitude=user.location.longitude if user.HasField("location") else None,
                preferences=json_format.MessageToDict(user.preferences, preserving_proto_field_name=True),
                update_time=utcnow()))
            return user_pb2.UpdateUserResponse(user=await self._load(s, user_id))

    async def CreateReview(self, request, context):
        subject_id = parse_name(request.parent, "users/{}", "parent")[0]
        author = principal.require()
        violations: list = []
        if not 1 <= request.review.rating <= 5:
            violations.append(("review.rating", "must be between 1 and 5"))
        check_text(violations, "review.text", request.review.text, max_len=2000)
        if subject_id == author.user_id:
            # A request that can never succeed, whatever the state: INVALID_ARGUMENT, not FAILED_PRECONDITION.
            violations.append(("parent", "you cannot review yourself"))
        if violations:
            raise errors.invalid_argument(*violations)
        review_id = new_id()
        now = utcnow()
        try:
            async with self.db.transaction() as s:
                subject = await self._profile(s, subject_id)
                refusal = may_review(standing(await self._profile(s, author.user_id)), standing(subject))
                if refusal:
                    raise errors.failed_precondition(refusal.message, refusal.reason)
                await s.execute(reviews.insert().values(id=review_id, subject_id=subject_id,
                                                        author_id=author.user_id, rating=request.review.rating,
                                                        text=request.review.text, create_time=now))
        except IntegrityError:
            raise errors.already_exists("user.petplatform.dev/Review", request.parent,
                                        "you have already reviewed this user") from None
        return user_pb2.CreateReviewResponse(review=user_pb2.Review(
            name=f"users/{subject_id}/reviews/{review_id}", author=author.resource_name,
            rating=request.review.rating, text=request.review.text, create_time=timestamp(now)))

    async def ListReviews(self, request, context):
        subject_id = parse_name(request.parent, "users/{}", "parent")[0]
        size = page_size(request.page_size)
        position = decode_page_token(request.page_token, request)
        query = sa.select(reviews).where(reviews.c.subject_id == subject_id)
        if position:
            after_time, after_id = dt.datetime.fromisoformat(position[0]), position[1]
            query = query.where(sa.or_(reviews.c.create_time < after_time,
                                       sa.and_(reviews.c.create_time == after_time, reviews.c.id < after_id)))
        async with self.db.transaction() as s:
            rows = (await s.execute(query.order_by(reviews.c.create_time.desc(), reviews.c.id.desc())
                                    .limit(size + 1))).all()
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = encode_page_token([rows[-1].create_time.isoformat(), rows[-1].id], request)
        return user_pb2.ListReviewsResponse(next_page_token=token, reviews=[user_pb2.Review(
            name=f"users/{r.subject_id}/reviews/{r.id}", author=f"users/{r.author_id}", rating=r.rating,
            text=r.text, create_time=timestamp(r.create_time)) for r in rows])

    async def GetTrustScore(self, request, context):
        user_id = resolve_user(request.name, suffix="/trustScore")
        async with self.db.transaction() as s:
            profile = await self._profile(s, user_id)
            trust, _, _ = await self._trust(s, profile)
        return user_pb2.GetTrustScoreResponse(trust_score=user_pb2.TrustScore(
            name=f"users/{user_id}/trustScore", score=trust.score, verification=trust.verification,
            reviews=trust.reviews, reports=trust.reports))

    async def _profile(self, s, user_id: str):
        row = (await s.execute(sa.select(profiles).where(profiles.c.user_id == user_id))).first()
        if row is None:
            raise errors.not_found(USER_TYPE, f"users/{user_id}")
        return row

    async def _trust(self, s, profile) -> tuple[Trust, int, float]:
        """The user's trust score, and the number and plain mean of the ratings about them."""
        author = profiles.alias("author")
        rows = (await s.execute(
            sa.select(reviews.c.rating, author.c.email_verified, author.c.create_time, author.c.upheld_reports)
            .join(author, author.c.user_id == reviews.c.author_id)
            .where(reviews.c.subject_id == profile.user_id))).all()
        now = utcnow()
        trust = trust_score(email_verified=profile.email_verified, upheld_reports=profile.upheld_reports,
                            reviews=[(r.rating, review_weight(standing(r), now)) for r in rows])
        return trust, len(rows), sum(r.rating for r in rows) / len(rows) if rows else 0.0

    async def _load(self, s, user_id: str, with_preferences: bool | None = None) -> user_pb2.User:
        profile = await self._profile(s, user_id)
        trust, count, average = await self._trust(s, profile)
        user = user_pb2.User(
            name=f"users/{user_id}", display_name=profile.display_name, bio=profile.bio,
            email_verified=profile.email_verified, trust_score=trust.score, review_count=count,
            average_rating=round(average, 2), create_time=timestamp(profile.create_time),
            update_time=timestamp(profile.update_time))
        if profile.latitude is not None:
            user.location.CopyFrom(latlng_pb2.LatLng(latitude=profile.latitude, longitude=profile.longitude))
        caller = principal.require()
        if with_preferences or caller.user_id == user_id or caller.is_admin:
            json_format.ParseDict(profile.preferences, user.preferences)
        return user
