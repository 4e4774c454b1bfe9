"""Profile and review rules as pure functions (the trust score has test_trust.py)."""
from __future__ import annotations

from google.type import latlng_pb2
import pytest

from mesh import errors
from mesh.principal import Principal
from petplatform.common.v1 import animal_pb2
from petplatform.user.v1 import user_pb2
from services.user import domain


def bad_fields(check, *args, **kwargs) -> set[str]:
    try:
        check(*args, **kwargs)
    except errors.ApiError as e:
        return {v.field for v in e.details[0].field_violations}
    return set()


@pytest.mark.parametrize("prefs, bad", [
    (user_pb2.Preferences(), set()),
    (user_pb2.Preferences(radius_km=500, min_age_months=600, max_age_months=600), set()),  # the bounds themselves
    (user_pb2.Preferences(min_age_months=24), set()),  # max 0: no upper limit
    (user_pb2.Preferences(min_age_months=12, max_age_months=12), set()),
    (user_pb2.Preferences(min_age_months=13, max_age_months=12), {"preferences.min_age_months"}),
    (user_pb2.Preferences(radius_km=-0.1), {"preferences.radius_km"}),
    (user_pb2.Preferences(max_age_months=601), {"preferences.max_age_months"}),
    (user_pb2.Preferences(species=[animal_pb2.SPECIES_CAT, 0]), {"preferences.species"}),
    (user_pb2.Preferences(sizes=[99]), {"preferences.sizes"}),
    (user_pb2.Preferences(home_type=99), {"preferences.home_type"}),
    (user_pb2.Preferences(location=latlng_pb2.LatLng(latitude=-90.1, longitude=180.1)),
     {"preferences.location.latitude", "preferences.location.longitude"}),
])
def test_preferences(prefs, bad):
    assert bad_fields(domain.check_profile, user_pb2.User(display_name="Alice", preferences=prefs), set()) == bad


def test_a_stored_display_name_is_judged_only_when_it_changes():
    legacy = user_pb2.User(display_name="Support", bio="Hi")  # reserved since it was chosen
    assert bad_fields(domain.check_profile, legacy, {"bio"}) == set()
    assert bad_fields(domain.check_profile, legacy, {"display_name"}) == {"user.display_name"}


def test_reviews():
    ok = user_pb2.Review(rating=5, text="Lovely")
    assert bad_fields(domain.check_review, ok, subject_id="s", author_id="a") == set()
    assert bad_fields(domain.check_review, user_pb2.Review(rating=0, text="t" * 2001), subject_id="a",
                      author_id="a") == {"review.rating", "review.text", "parent"}
    assert bad_fields(domain.check_review, user_pb2.Review(rating=6), subject_id="s", author_id="a") == {
        "review.rating"}


def test_a_profile_is_managed_by_its_user_and_admins():
    assert domain.may_manage_profile(Principal("u1", "user", "s"), "u1")
    assert not domain.may_manage_profile(Principal("u2", "user", "s"), "u1")
    assert domain.may_manage_profile(Principal("u2", "admin", "s", amr=("pwd", "otp", "mfa")), "u1")
    assert not domain.may_manage_profile(Principal("u2", "admin", "s", amr=("pwd",)), "u1")  # no second factor


def test_average_rating():
    assert domain.average_rating([]) == 0.0
    assert domain.average_rating([5, 4, 4]) == pytest.approx(13 / 3)
