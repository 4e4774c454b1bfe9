"""Double-blind reviews of completed bookings, embedded profile: each side reviews the other once
within 21 days of completion; neither sees the other's review until both have written or the window
has closed; the owner's review feeds the business's rating, the business's review reaches the
owner's profile (review count, average, trust score) through booking.review_published."""
from __future__ import annotations

import datetime as dt

import grpc

from petplatform.marketplace.v1 import events_pb2 as ev
from petplatform.marketplace.v1 import marketplace_pb2 as m
from petplatform.user.v1 import user_pb2
from services.user.module import on_booking_review_published
from tests.e2e.marketplace.test_bookings import accepted_and_paid, clocks_moved
from tests.support.errors import expect
from tests.support.market import B, P, payment_reaches
from tests.support.matching import until
from tests.support.platform import Api, module_of

CODE = grpc.StatusCode


async def completed(api: Api):
    seller, owner, biz, svc, b = await accepted_and_paid(api)
    await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_SUCCEEDED)
    from tests.support.market import booking_reaches
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    await api.marketplace.StartBooking(m.StartBookingRequest(name=b.name), metadata=seller.md)
    done = (await api.marketplace.CompleteBooking(m.CompleteBookingRequest(name=b.name), metadata=seller.md)).booking
    return seller, owner, biz, done


async def review(api: Api, who, booking: str, rating: int, text: str = "", request_id: str = "") -> m.BookingReview:
    return (await api.marketplace.CreateBookingReview(m.CreateBookingReviewRequest(
        parent=booking, review=m.BookingReview(rating=rating, text=text), request_id=request_id),
        metadata=who.md)).review


async def seen_by(api: Api, who, booking: str) -> dict[str, m.BookingReview]:
    got = await api.marketplace.ListBookingReviews(m.ListBookingReviewsRequest(parent=booking), metadata=who.md)
    return {r.name.rsplit("/", 1)[1]: r for r in got.reviews}


async def profile(api: Api, who, user_id: str) -> user_pb2.User:
    return (await api.user.GetUser(user_pb2.GetUserRequest(name=f"users/{user_id}"), metadata=who.md)).user


async def test_reviews_are_hidden_until_both_sides_wrote_then_feed_both_scores(market: Api):
    api = market
    seller, owner, biz, b = await completed(api)
    assert b.review_deadline.ToDatetime() - b.update_time.ToDatetime() == dt.timedelta(days=21)

    mine = await review(api, owner, b.name, 4, "Lovely walk")
    assert (mine.name, mine.author, mine.subject, mine.published) == (
        f"{b.name}/reviews/owner", f"users/{owner.user_id}", biz.name, False)
    assert set(await seen_by(api, owner, b.name)) == {"owner"}
    assert await seen_by(api, seller, b.name) == {}  # double-blind
    assert (await api.marketplace.GetBusiness(m.GetBusinessRequest(name=biz.name))).business.review_count == 0

    theirs = await review(api, seller, b.name, 5, "Punctual, friendly dog")
    assert theirs.published and theirs.subject == f"users/{owner.user_id}"
    for who in (owner, seller):
        both = await seen_by(api, who, b.name)
        assert set(both) == {"owner", "business"} and all(r.published for r in both.values())
    business = (await api.marketplace.GetBusiness(m.GetBusinessRequest(name=biz.name))).business
    assert (business.rating, business.review_count) == (4.0, 1)

    # The owner's profile counts the business's review (the user service, through the event).
    async def counted():
        u = await profile(api, seller, owner.user_id)
        return u if u.review_count == 1 else None
    assert (await until(counted, what="the owner's booking rating")).average_rating == 5.0


async def test_a_lone_review_is_published_when_the_window_closes_and_late_ones_are_refused(market: Api):
    api = market
    seller, owner, biz, b = await completed(api)
    await review(api, seller, b.name, 2, "Late twice")
    assert await seen_by(api, owner, b.name) == {}
    with clocks_moved(api, dt.timedelta(days=21, minutes=1)):
        async def published():
            return (await seen_by(api, owner, b.name)).get("business")
        lone = await until(published, what="the lone review, published")
        assert lone.rating == 2 and lone.published
        await expect(CODE.FAILED_PRECONDITION, review(api, owner, b.name, 5), reason="REVIEW_WINDOW_CLOSED")

        async def counted():
            return (await profile(api, owner, owner.user_id)).review_count == 1
        await until(counted, what="the owner's rating after the window")


async def test_only_the_two_sides_review_once_each_a_completed_booking_with_a_valid_rating(market: Api):
    api = market
    seller, owner, _, _, open_booking = await accepted_and_paid(api)
    await expect(CODE.FAILED_PRECONDITION, review(api, owner, open_booking.name, 5), reason="BOOKING_STATE")
    seller, owner, biz, b = await completed(api)
    stranger = await api.signup("Stranger")
    await expect(CODE.NOT_FOUND, review(api, stranger, b.name, 5))
    await expect(CODE.NOT_FOUND, api.marketplace.ListBookingReviews(m.ListBookingReviewsRequest(parent=b.name),
                                                    metadata=stranger.md))
    for bad in (0, 6, -1):
        await expect(CODE.INVALID_ARGUMENT, review(api, owner, b.name, bad))
    await expect(CODE.INVALID_ARGUMENT, review(api, owner, b.name, 3, "x" * 2001))
    await expect(CODE.INVALID_ARGUMENT, review(api, owner, "bookings/", 3))
    await expect(CODE.INVALID_ARGUMENT, api.marketplace.CreateBookingReview(m.CreateBookingReviewRequest(parent=b.name),
                                                     metadata=owner.md))
    first = await review(api, owner, b.name, 3, request_id="r-1")
    assert await review(api, owner, b.name, 3, request_id="r-1") == first  # a retry: the first answer
    await expect(CODE.ALREADY_EXISTS, review(api, owner, b.name, 5))
    assert (await api.marketplace.GetBusiness(m.GetBusinessRequest(name=biz.name))).business.review_count == 0


async def test_a_replayed_review_event_counts_once_in_the_users_service(market: Api):
    api = market
    seller, owner, _, b = await completed(api)
    await review(api, owner, b.name, 4)
    theirs = await review(api, seller, b.name, 1)

    async def counted():
        return (await profile(api, owner, owner.user_id)).review_count == 1
    await until(counted, what="the owner's rating")
    event = ev.BookingReviewPublished(review=theirs, booking=b)
    db = module_of(api, "user").db
    for _ in range(2):
        async with db.transaction() as s:
            await on_booking_review_published(s, event)
    u = await profile(api, owner, owner.user_id)
    assert (u.review_count, u.average_rating) == (1, 1.0)
