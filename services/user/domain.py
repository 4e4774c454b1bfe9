"""The trust score: one formula, documented on the TrustScore message of the contract."""
from __future__ import annotations

import dataclasses

VERIFIED_POINTS = 20.0
POINTS_PER_STAR = 12.5  # (avg - 3) * 12.5 spans -25..+25
FULL_CONFIDENCE_REVIEWS = 10
POINTS_PER_REPORT = 10.0
MAX_REPORT_PENALTY = 50.0


@dataclasses.dataclass(frozen=True)
class Trust:
    score: float
    verification: float
    reviews: float
    reports: float


def trust_score(*, email_verified: bool, review_count: int, average_rating: float, upheld_reports: int) -> Trust:
    verification = VERIFIED_POINTS if email_verified else 0.0
    confidence = min(review_count, FULL_CONFIDENCE_REVIEWS) / FULL_CONFIDENCE_REVIEWS
    reviews = (average_rating - 3) * POINTS_PER_STAR * confidence if review_count else 0.0
    reports = min(upheld_reports * POINTS_PER_REPORT, MAX_REPORT_PENALTY)
    score = max(0.0, min(100.0, 50 + verification + reviews - reports))
    return Trust(round(score, 2), verification, round(reviews, 2), reports)
