"""User rules that need no database: what a profile and a review may hold, who may change or see what,
who may review whom, and the trust score: one formula, documented on the TrustScore message of the contract."""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from google.type import latlng_pb2

from mesh import errors
from mesh.principal import Principal
from mesh.resources import check_display_name, check_text
from petplatform.common.v1 import animal_pb2
from petplatform.user.v1 import user_pb2

PREFERENCE_FIELDS = [f.name for f in user_pb2.Preferences.DESCRIPTOR.fields]
UPDATABLE = {"display_name", "bio", "location", "preferences", *(f"preferences.{f}" for f in PREFERENCE_FIELDS)}
MAX_AGE_MONTHS = 600
MAX_RADIUS_KM = 500

VERIFIED_POINTS = 20.0
POINTS_PER_STAR = 12.5  # (avg - 3) * 12.5 spans -25..+25
FULL_CONFIDENCE_REVIEWS = 10  # full-weight reviews, or the same total weight from lighter ones
POINTS_PER_REPORT = 10.0
MAX_REPORT_PENALTY = 50.0
FULL_WEIGHT_AGE = dt.timedelta(days=30)  # a reviewer's account counts fully from this age on


def may_manage_profile(caller: Principal, user_id: str) -> bool:
    """Who may change a profile and see its preferences (the rest of a profile is public): its user, and admins."""
    return caller.user_id == user_id or caller.is_admin


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


def check_profile(user: user_pb2.User, paths: set[str]) -> None:
    """Raises INVALID_ARGUMENT naming every bad field of a profile as it would be after an update of `paths`."""
    violations: list = []
    if "display_name" in paths:  # a stored name from before a rule changed does not block other fields
        check_display_name(violations, "user.display_name", user.display_name.strip())
    check_text(violations, "user.bio", user.bio, max_len=2000)
    check_location(violations, "user.location", user.location)
    check_preferences(violations, user.preferences)
    if violations:
        raise errors.invalid_argument(*violations)


def check_review(review: user_pb2.Review, *, subject_id: str, author_id: str) -> None:
    """Raises INVALID_ARGUMENT naming every bad field of a new review."""
    violations: list = []
    if not 1 <= review.rating <= 5:
        violations.append(("review.rating", "must be between 1 and 5"))
    check_text(violations, "review.text", review.text, max_len=2000)
    if subject_id == author_id:
        # A request that can never succeed, whatever the state: INVALID_ARGUMENT, not FAILED_PRECONDITION.
        violations.append(("parent", "you cannot review yourself"))
    if violations:
        raise errors.invalid_argument(*violations)


@dataclasses.dataclass(frozen=True)
class Standing:
    """What the rules know of a user (a reviewer or the one reviewed)."""

    email_verified: bool
    create_time: dt.datetime
    upheld_reports: int


@dataclasses.dataclass(frozen=True)
class Refusal:
    reason: str  # ErrorInfo reason of the FAILED_PRECONDITION
    message: str


@dataclasses.dataclass(frozen=True)
class Trust:
    score: float
    verification: float
    reviews: float
    reports: float


def may_review(reviewer: Standing, subject: Standing) -> Refusal | None:
    """Why `reviewer` may not review `subject`, or None when they may: the one place that decides it.

    A review must rest on something real. Today that is the reviewer's verified email, as the two can
    have no history together yet. When matching, adoption and the marketplace exist, what the two did
    together (a match, an adoption, a booking) plugs in here: the API asks those services through their
    stubs, hands the answer in with the two standings, and this function requires some of it."""
    if not reviewer.email_verified:
        return Refusal("EMAIL_NOT_VERIFIED", "verify your email address before reviewing other users")
    return None


def report_penalty(upheld_reports: int) -> float:
    return min(upheld_reports * POINTS_PER_REPORT, MAX_REPORT_PENALTY)


def review_weight(reviewer: Standing, now: dt.datetime) -> float:
    """How much one review counts, 0 to 1, by its reviewer's standing, so that a burst of new accounts
    moves a score little: nothing from an unverified reviewer; growing with the age of their account up
    to FULL_WEIGHT_AGE; and lowered by their own trust, as far as it does not rest on reviews (which
    would make scores feed each other): each upheld report against them takes a fifth off."""
    if not reviewer.email_verified:
        return 0.0
    age = min(max((now - reviewer.create_time) / FULL_WEIGHT_AGE, 0.0), 1.0)
    return age * (1 - report_penalty(reviewer.upheld_reports) / MAX_REPORT_PENALTY)


def average_rating(ratings: Sequence[int]) -> float:
    """The plain mean of the ratings about a user, 0 when there are none (shown beside the count)."""
    return sum(ratings) / len(ratings) if ratings else 0.0


def trust_score(*, email_verified: bool, reviews: Sequence[tuple[int, float]], upheld_reports: int) -> Trust:
    """`reviews`: (rating, weight) of each review about the user. The reviews part is the weighted mean
    rating's distance from 3 stars, times the confidence that the total weight gives."""
    verification = VERIFIED_POINTS if email_verified else 0.0
    weight = sum(w for _, w in reviews)
    review_points = 0.0
    if weight:
        average = sum(rating * w for rating, w in reviews) / weight
        confidence = min(weight, FULL_CONFIDENCE_REVIEWS) / FULL_CONFIDENCE_REVIEWS
        review_points = (average - 3) * POINTS_PER_STAR * confidence
    reports = report_penalty(upheld_reports)
    score = max(0.0, min(100.0, 50 + verification + review_points - reports))
    return Trust(round(score, 2), verification, round(review_points, 2), reports)
