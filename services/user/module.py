from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mesh.events import Effects
from mesh.resources import parse_name
from mesh.runtime import ServiceModule
from mesh.sql import utcnow
from petplatform.auth.v1 import events_pb2 as auth_events
from petplatform.marketplace.v1 import events_pb2 as market_events
from petplatform.user.v1 import events_pb2 as user_events
from services.user import store
from services.user.api import UserServicer


class ProfileNotYetCreated(Exception):
    """An event about a user whose user.created has not been applied yet: retried by the bus."""


def user_id(name: str) -> str:
    return parse_name(name, "users/{}", "user")[0]


async def on_user_created(s, event: auth_events.UserCreated) -> None:
    # The inbox already drops replays of this event; the check also tolerates a profile made otherwise.
    await store.create_profile(s, user_id(event.user), event.display_name)


async def on_email_verified(s, event: auth_events.UserEmailVerified) -> None:
    if not await store.mark_email_verified(s, user_id(event.user)):
        raise ProfileNotYetCreated(event.user)


async def on_user_reported(s, event: user_events.UserReported) -> None:
    if not await store.count_upheld_report(s, user_id(event.user)):
        raise ProfileNotYetCreated(event.user)


async def on_booking_review_published(s, event: market_events.BookingReviewPublished) -> None:
    """A business's published review of the owner it served counts toward the owner's trust score,
    once per booking (replays change nothing); reviews of businesses are the marketplace's."""
    if not event.review.subject.startswith("users/"):
        return
    if not await store.add_booking_rating(s, booking_id=event.booking.name.removeprefix("bookings/"),
                                          subject_id=user_id(event.review.subject),
                                          author_id=user_id(event.review.author), rating=event.review.rating,
                                          now=utcnow()):
        raise ProfileNotYetCreated(event.review.subject)


class UserModule(ServiceModule):
    migrations = Path(__file__).parent / "migrations"

    def servicers(self) -> Mapping[str, object]:
        return {"petplatform.user.v1.UserService": UserServicer(self.db)}

    def consumers(self) -> Mapping[str, Effects]:
        return {"user.profiles": {auth_events.UserCreated: on_user_created,
                                  auth_events.UserEmailVerified: on_email_verified,
                                  user_events.UserReported: on_user_reported},
                "user.booking_ratings": {market_events.BookingReviewPublished: on_booking_review_published}}
