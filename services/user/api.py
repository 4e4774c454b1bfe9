"""UserService: profiles and preferences, reviews between users, trust scores."""
from __future__ import annotations

import datetime as dt

from google.protobuf import field_mask_pb2, json_format
from google.type import latlng_pb2
import grpc
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import errors, pagination, principal
from mesh.resources import check_mask, decode_page_token, new_id, page_size, parse_name, resolve_user, timestamp
from mesh.sql import Database, Row, utcnow
from petplatform.user.v1 import user_pb2, user_pb2_grpc
from services.user import domain, store
from services.user.domain import Standing, Trust

USER_TYPE = "user.petplatform.dev/User"


def standing(row: Row) -> Standing:
    """A profile row, or a row with the same columns, as the review rules see it."""
    return Standing(email_verified=row.email_verified, create_time=row.create_time,
                    upheld_reports=row.upheld_reports)


class UserServicer(user_pb2_grpc.UserServiceServicer):
    def __init__(self, db: Database):
        self.db = db

    async def GetUser(self, request: user_pb2.GetUserRequest,
                      context: grpc.aio.ServicerContext) -> user_pb2.GetUserResponse:
        user_id = resolve_user(request.name)
        async with self.db.read() as s:
            return user_pb2.GetUserResponse(user=await self._load(s, user_id))

    async def UpdateUser(self, request: user_pb2.UpdateUserRequest,
                         context: grpc.aio.ServicerContext) -> user_pb2.UpdateUserResponse:
        user_id = resolve_user(request.user.name, "user.name")
        if not domain.may_manage_profile(principal.require(), user_id):
            raise errors.permission_denied("you can only change your own profile")
        paths = check_mask(request.update_mask, domain.UPDATABLE)
        async with self.db.transaction() as s:
            user = await self._load(s, user_id, with_preferences=True)
            field_mask_pb2.FieldMask(paths=sorted(paths)).MergeMessage(
                request.user, user, replace_message_field=True, replace_repeated_field=True)
            domain.check_profile(user, paths)
            await store.update_profile(
                s, user_id, display_name=user.display_name.strip(), bio=user.bio,
                location=(user.location.latitude, user.location.longitude) if user.HasField("location") else None,
                preferences=json_format.MessageToDict(user.preferences, preserving_proto_field_name=True))
            return user_pb2.UpdateUserResponse(user=await self._load(s, user_id))

    async def CreateReview(self, request: user_pb2.CreateReviewRequest,
                           context: grpc.aio.ServicerContext) -> user_pb2.CreateReviewResponse:
        subject_id = parse_name(request.parent, "users/{}", "parent")[0]
        author = principal.require()
        domain.check_review(request.review, subject_id=subject_id, author_id=author.user_id)
        review_id = new_id()
        now = utcnow()
        try:
            async with self.db.transaction() as s:
                subject = await self._profile(s, subject_id)
                refusal = domain.may_review(standing(await self._profile(s, author.user_id)), standing(subject))
                if refusal:
                    raise errors.failed_precondition(refusal.message, refusal.reason)
                await store.add_review(s, review_id=review_id, subject_id=subject_id, author_id=author.user_id,
                                       rating=request.review.rating, text=request.review.text, create_time=now)
        except IntegrityError:
            raise errors.already_exists("user.petplatform.dev/Review", request.parent,
                                        "you have already reviewed this user") from None
        return user_pb2.CreateReviewResponse(review=user_pb2.Review(
            name=f"users/{subject_id}/reviews/{review_id}", author=author.resource_name,
            rating=request.review.rating, text=request.review.text, create_time=timestamp(now)))

    async def ListReviews(self, request: user_pb2.ListReviewsRequest,
                          context: grpc.aio.ServicerContext) -> user_pb2.ListReviewsResponse:
        subject_id = parse_name(request.parent, "users/{}", "parent")[0]
        size = page_size(request.page_size)
        position = decode_page_token(request.page_token, request)
        after = (dt.datetime.fromisoformat(position[0]), position[1]) if position else None
        async with self.db.read() as s:
            rows = await store.list_reviews(s, subject_id, after=after, size=size)
        rows, token = pagination.page(rows, size, lambda r: [r.create_time.isoformat(), r.id], request)
        return user_pb2.ListReviewsResponse(next_page_token=token, reviews=[user_pb2.Review(
            name=f"users/{r.subject_id}/reviews/{r.id}", author=f"users/{r.author_id}", rating=r.rating,
            text=r.text, create_time=timestamp(r.create_time)) for r in rows])

    async def GetTrustScore(self, request: user_pb2.GetTrustScoreRequest,
                            context: grpc.aio.ServicerContext) -> user_pb2.GetTrustScoreResponse:
        user_id = resolve_user(request.name, suffix="/trustScore")
        async with self.db.read() as s:
            profile = await self._profile(s, user_id)
            trust, _, _ = await self._trust(s, profile)
        return user_pb2.GetTrustScoreResponse(trust_score=user_pb2.TrustScore(
            name=f"users/{user_id}/trustScore", score=trust.score, verification=trust.verification,
            reviews=trust.reviews, reports=trust.reports))

    async def _profile(self, s: AsyncSession, user_id: str) -> Row:
        row = await store.find_profile(s, user_id)
        if row is None:
            raise errors.not_found(USER_TYPE, f"users/{user_id}")
        return row

    async def _trust(self, s: AsyncSession, profile: Row) -> tuple[Trust, int, float]:
        """The user's trust score, and the number and plain mean of the ratings about them."""
        rows = await store.ratings_with_reviewers(s, profile.user_id)
        now = utcnow()
        trust = domain.trust_score(email_verified=profile.email_verified, upheld_reports=profile.upheld_reports,
                                   reviews=[(r.rating, domain.review_weight(standing(r), now)) for r in rows])
        return trust, len(rows), domain.average_rating([r.rating for r in rows])

    async def _load(self, s: AsyncSession, user_id: str, with_preferences: bool | None = None) -> user_pb2.User:
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
        if with_preferences or domain.may_manage_profile(caller, user_id):
            json_format.ParseDict(profile.preferences, user.preferences)
        return user
