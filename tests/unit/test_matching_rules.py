"""Matching rules without a server: the circuit breaker, preferences against request fields, ranking
fallback, reasons and the daily window."""
from __future__ import annotations

import datetime as dt

from google.type import latlng_pb2

from petplatform.matching.v1 import matching_pb2
from petplatform.pet.v1 import pet_pb2
from petplatform.user.v1 import user_pb2
from services.matching import domain
from services.matching.ranking import BreakerState, CircuitBreaker


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_consecutive_failures_and_probes_after_the_cool_down():
    clock = Clock()
    b = CircuitBreaker(failures=3, cool_down=30, clock=clock)
    for _ in range(2):
        assert b.allow()
        b.failed()
    assert b.allow()
    b.succeeded()  # a success in between: the count starts again
    for _ in range(3):
        assert b.allow()
        b.failed()
    assert b.state is BreakerState.OPEN and not b.allow()
    clock.now = 29.9
    assert not b.allow()
    clock.now = 30
    assert b.allow() and b.state is BreakerState.HALF_OPEN
    assert not b.allow(), "one probe at a time"
    b.failed()  # the probe failed: open for another cool-down
    assert b.state is BreakerState.OPEN and not b.allow()
    clock.now = 60
    assert b.allow()
    b.succeeded()
    assert b.state is BreakerState.CLOSED and b.allow() and b.allow()


def test_request_fields_override_preferences_one_by_one():
    prefs = user_pb2.Preferences(species=[1], sizes=[2], min_age_months=6, max_age_months=24, radius_km=20,
                                 location=latlng_pb2.LatLng(latitude=35, longitude=139))
    f = domain.filters(matching_pb2.GetFeedRequest(), prefs)
    assert (f.species, f.sizes, f.min_age_months, f.max_age_months, f.radius_km) == ((1,), (2,), 6, 24, 20)
    f = domain.filters(matching_pb2.GetFeedRequest(species=[2, 3], radius_km=100, min_age_months=30), prefs)
    assert f.species == (2, 3) and f.radius_km == 100 and f.sizes == (2,)
    assert (f.min_age_months, f.max_age_months) == (30, 0), "a request bound past a preferred one replaces both"
    f = domain.filters(matching_pb2.GetFeedRequest(location=latlng_pb2.LatLng(latitude=1, longitude=2)),
                       user_pb2.Preferences())
    assert f.location.latitude == 1 and f.radius_km == 0


def test_the_fallback_weighs_popularity_then_nearness():
    popular_far = domain.fallback_score(likes=10, most_likes=10, km=100)
    quiet_near = domain.fallback_score(likes=0, most_likes=10, km=0)
    assert popular_far > quiet_near > domain.fallback_score(likes=0, most_likes=10, km=50)
    assert domain.fallback_score(likes=0, most_likes=0, km=None) == domain.NEARNESS_WEIGHT * 0.5


def test_reasons_read_as_a_person_would_say_them():
    pet = pet_pb2.Pet(good_with_children=True, good_with_dogs=True)
    prefs = user_pb2.Preferences(has_children=True, has_other_pets=True)
    assert domain.reasons(pet, km=3.4, prefs=prefs, collaborative=0.7, popular=True) == [
        "3 km away", "likes similar to yours", "good with children", "good with other pets", "popular"]
    assert domain.reasons(pet_pb2.Pet(), km=0.2, prefs=user_pb2.Preferences()) == ["less than 1 km away"]
    assert domain.reasons(pet_pb2.Pet(), km=None, prefs=user_pb2.Preferences()) == []


def test_the_swipe_limit_resets_at_midnight_utc_and_interests_sort_super_likes_first():
    now = dt.datetime(2026, 11, 26, 23, 59, 30, tzinfo=dt.timezone.utc)
    assert domain.seconds_to_next_day(now) == 30
    assert domain.swipe_day(now.astimezone(dt.timezone(dt.timedelta(hours=9)))) == dt.date(2026, 11, 26)
    older_super = domain.interest_rank(True, now - dt.timedelta(days=1))
    newer_like = domain.interest_rank(False, now)
    assert sorted([newer_like, older_super], reverse=True) == [older_super, newer_like]
    assert domain.interest_rank(False, now) > domain.interest_rank(False, now - dt.timedelta(microseconds=1))
    assert domain.playdate_key("b", "a") == domain.playdate_key("a", "b")
