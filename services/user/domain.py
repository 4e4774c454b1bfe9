"""Who may review whom, and the trust score: one formula, documented on the TrustScore message of the contract."""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

VERIFIED_POINTS = 20.0
POINTS_PER_STAR = 12.5  # (avg - 3) * 12.5 spans -25..+25
FULL_CONFIDENCE_REVIEWS = 10  # full-weight reviews, or the same total weight from lighter ones
POINTS_PER_REPORT = 10.0
MAX_REPORT_PENALTY = 50.0
FULL_WEIGHT_AGE = dt.timedelta(days=30)  # a reviewer's account counts fully from this age on


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
