"""The trust rules as pure functions: who may review, how much a review weighs, the score."""
from __future__ import annotations

import datetime as dt

import pytest

from services.user.domain import Standing, may_review, review_weight, trust_score

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)


def user(age: dt.timedelta = dt.timedelta(days=365), verified: bool = True, reports: int = 0) -> Standing:
    return Standing(email_verified=verified, create_time=NOW - age, upheld_reports=reports)


def score(*reviews: tuple[int, Standing], verified: bool = False, reports: int = 0):
    return trust_score(email_verified=verified, upheld_reports=reports,
                       reviews=[(rating, review_weight(who, NOW)) for rating, who in reviews])


def test_only_verified_reviewers_may_review():
    refusal = may_review(user(verified=False), user())
    assert refusal.reason == "EMAIL_NOT_VERIFIED" and "verify" in refusal.message
    assert may_review(user(), user(verified=False)) is None
    assert may_review(user(age=dt.timedelta(seconds=1)), user()) is None


def test_no_reviews_leaves_the_base_score():
    assert score().score == 50
    assert score(verified=True).score == 70
    assert (score(reports=2).score, score(reports=9).reports) == (30, 50)


def test_a_burst_of_new_accounts_moves_the_score_little():
    # The case: nine accounts a few seconds old, five stars each.
    fresh = [(5, user(age=dt.timedelta(seconds=10))) for _ in range(9)]
    assert score(*fresh).score == 50
    # Even a day old, nine of them move it by under a point; the same reviews from established
    # accounts move it as before the weighting.
    day_old = [(5, user(age=dt.timedelta(days=1))) for _ in range(9)]
    assert 50 < score(*day_old).score < 51
    established = [(5, user()) for _ in range(9)]
    assert score(*established).reviews == 22.5  # (5 - 3) * 12.5 * 9/10


def test_unverified_reviewers_count_for_nothing():
    assert score(*[(1, user(verified=False)) for _ in range(20)]).score == 50
    assert score((5, user()), (1, user(verified=False))).reviews == 2.5  # one review at 5 stars, 1/10 confidence


def test_weight_grows_with_account_age_up_to_thirty_days():
    weights = [review_weight(user(age=dt.timedelta(days=d)), NOW) for d in (0, 3, 15, 30, 400)]
    assert weights == [0, pytest.approx(0.1), pytest.approx(0.5), 1, 1]
    assert review_weight(user(age=-dt.timedelta(days=1)), NOW) == 0  # a clock ahead counts as new


def test_reports_against_a_reviewer_lower_their_weight():
    assert [review_weight(user(reports=n), NOW) for n in (0, 1, 3, 5, 8)] == [
        1, pytest.approx(0.8), pytest.approx(0.4), 0, 0]


def test_the_average_is_weighted_by_standing():
    # A full-weight 1-star and a half-weight 5-star review: (1 * 1 + 5 * 0.5) / 1.5 = 2.33 stars,
    # with confidence 1.5 / 10.
    t = score((1, user()), (5, user(age=dt.timedelta(days=15))))
    assert t.reviews == round((7 / 3 - 3) * 12.5 * 0.15, 2)


def test_ten_full_weights_give_full_confidence_and_the_score_stays_within_bounds():
    assert score(*[(5, user()) for _ in range(30)], verified=True).score == 95
    assert score(*[(1, user()) for _ in range(30)], reports=5).score == 0
    # Twenty half-weight reviews count as ten full ones.
    assert score(*[(5, user(age=dt.timedelta(days=15))) for _ in range(20)]).reviews == 25
