"""Matching rules that need no database: the feed's filters (preferences, overridden by the request),
distances, the fallback ranking, the reasons shown on a card, who may see or change a match, and the
daily swipe window."""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence

from google.type import latlng_pb2

from mesh import errors
from mesh.principal import Principal
from petplatform.common.v1 import animal_pb2
from petplatform.matching.v1 import matching_pb2
from petplatform.pet.v1 import pet_pb2
from petplatform.user.v1 import user_pb2

EARTH_RADIUS_KM = 6371.0088
MAX_RADIUS_KM = 500
MAX_AGE_MONTHS = 600
DEFAULT_FEED_SIZE = 10
MAX_FEED_SIZE = 50
MAX_CANDIDATES = 10_000  # what RankPets takes in one call
MAX_FILTER_VALUES = 20
# The fallback ranking: how much popularity and nearness weigh, and the distance at which nearness halves.
POPULARITY_WEIGHT = 0.6
NEARNESS_WEIGHT = 0.4
NEARNESS_HALF_KM = 10.0
SIMILAR_LIKES = 0.5  # a collaborative part at least this high reads "likes similar to yours"

Kind = matching_pb2.Match.Kind
MatchState = matching_pb2.Match.State
InterestState = matching_pb2.Interest.State


@dataclasses.dataclass(frozen=True)
class Filters:
    """What a feed holds, once the request's fields have overridden the caller's preferences."""

    species: tuple[int, ...]
    sizes: tuple[int, ...]
    min_age_months: int
    max_age_months: int
    location: latlng_pb2.LatLng | None
    radius_km: float  # 0: anywhere


def check_feed_request(r: matching_pb2.GetFeedRequest) -> None:
    v: list = []
    if not 0 <= r.page_size <= MAX_FEED_SIZE:
        v.append(("page_size", f"must be between 0 and {MAX_FEED_SIZE}"))
    for field, enum in (("species", animal_pb2.Species), ("sizes", animal_pb2.PetSize)):
        values = getattr(r, field)
        if len(values) > MAX_FILTER_VALUES:
            v.append((field, f"at most {MAX_FILTER_VALUES} values"))
        elif any(x == 0 or x not in enum.values() for x in values):
            v.append((field, "must hold only defined, specified values"))
    for field in ("min_age_months", "max_age_months"):
        if not 0 <= getattr(r, field) <= MAX_AGE_MONTHS:
            v.append((field, f"must be between 0 and {MAX_AGE_MONTHS}"))
    if r.max_age_months and r.min_age_months > r.max_age_months:
        v.append(("min_age_months", "must not exceed max_age_months"))
    if not 0 <= r.radius_km <= MAX_RADIUS_KM or math.isnan(r.radius_km):
        v.append(("radius_km", f"must be between 0 and {MAX_RADIUS_KM}"))
    if r.HasField("location") and not (-90 <= r.location.latitude <= 90 and -180 <= r.location.longitude <= 180):
        v.append(("location", "latitude must be within ±90 and longitude within ±180"))
    if v:
        raise errors.invalid_argument(*v)


def filters(r: matching_pb2.GetFeedRequest, prefs: user_pb2.Preferences) -> Filters:
    """Each filter the request sets wins over the caller's preference for it."""
    min_age = r.min_age_months or prefs.min_age_months
    max_age = r.max_age_months or prefs.max_age_months
    if max_age and min_age > max_age:  # one bound from the request, the other from preferences
        min_age = r.min_age_months if r.min_age_months else 0
        max_age = r.max_age_months if r.max_age_months else 0
    location = r.location if r.HasField("location") else prefs.location if prefs.HasField("location") else None
    return Filters(species=tuple(r.species or prefs.species), sizes=tuple(r.sizes or prefs.sizes),
                   min_age_months=min_age, max_age_months=max_age, location=location,
                   radius_km=r.radius_km or prefs.radius_km)


def months_ago(today: dt.date, months: int) -> dt.date:
    """The date `months` whole months before today (clamped to the month's last day), as the pet service
    counts ages."""
    y, m = divmod(today.year * 12 + today.month - 1 - months, 12)
    for day in (today.day, 30, 29, 28):
        try:
            return dt.date(y, m + 1, day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def months_between(earlier: dt.date, later: dt.date) -> int:
    months = (later.year - earlier.year) * 12 + later.month - earlier.month
    return max(0, months - (1 if later.day < earlier.day else 0))


def birth_bounds(f: Filters, today: dt.date) -> tuple[dt.date | None, dt.date | None]:
    """(born after, born on or before) for the age bounds; None where unbounded."""
    if not (f.min_age_months or f.max_age_months):
        return None, None
    after = months_ago(today, f.max_age_months + 1) if f.max_age_months else None
    return after, months_ago(today, f.min_age_months)


def latitude_box(f: Filters) -> tuple[float, float] | None:
    """Latitudes the radius can reach (1° of latitude is 111.2 km): a bound an index can use."""
    if f.location is None or not f.radius_km:
        return None
    dlat = f.radius_km / 111.0
    return f.location.latitude - dlat, f.location.latitude + dlat


def distance_km(a: latlng_pb2.LatLng, lat: float, lng: float) -> float:
    r = math.radians
    dlat, dlng = (r(lat) - r(a.latitude)) / 2, (r(lng) - r(a.longitude)) / 2
    h = math.sin(dlat) ** 2 + math.cos(r(a.latitude)) * math.cos(r(lat)) * math.sin(dlng) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


def nearness(km: float | None) -> float:
    """1 at the door, halving every NEARNESS_HALF_KM; 0.5 when either place is unknown."""
    return 0.5 if km is None else 0.5 ** (km / NEARNESS_HALF_KM)


def fallback_score(*, likes: int, most_likes: int, km: float | None) -> float:
    """Popularity (likes against the most liked candidate) and nearness, when the recommender cannot rank."""
    popularity = likes / most_likes if most_likes else 0.0
    return POPULARITY_WEIGHT * popularity + NEARNESS_WEIGHT * nearness(km)


def distance_text(km: float) -> str:
    return "less than 1 km away" if km < 1 else f"{round(km):,} km away"


def reasons(pet: pet_pb2.Pet, *, km: float | None, prefs: user_pb2.Preferences, collaborative: float = 0.0,
            popular: bool = False) -> list[str]:
    """Short reasons a person can read for showing this pet, most telling first."""
    out = []
    if km is not None:
        out.append(distance_text(km))
    if collaborative >= SIMILAR_LIKES:
        out.append("likes similar to yours")
    if pet.good_with_children:
        out.append("good with children")
    if prefs.has_other_pets and (pet.good_with_dogs or pet.good_with_cats):
        out.append("good with other pets")
    if popular:
        out.append("popular")
    return out


def check_swipe(r: matching_pb2.SwipeRequest) -> None:
    if r.action not in (matching_pb2.SWIPE_ACTION_PASS, matching_pb2.SWIPE_ACTION_LIKE,
                        matching_pb2.SWIPE_ACTION_SUPER_LIKE):
        raise errors.invalid_argument(("action", "must be SWIPE_ACTION_PASS, _LIKE or _SUPER_LIKE"))


def swipe_day(now: dt.datetime) -> dt.date:
    """The daily swipe limit counts per UTC day."""
    return now.astimezone(dt.timezone.utc).date()


def seconds_to_next_day(now: dt.datetime) -> float:
    tomorrow = dt.datetime.combine(swipe_day(now) + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    return (tomorrow - now).total_seconds()


def interest_rank(super_like: bool, when: dt.datetime) -> str:
    """The sort key of interest listings: super-likes first, then newest (sorted descending)."""
    return f"{int(super_like)}{when.astimezone(dt.timezone.utc):%Y%m%d%H%M%S%f}"


def playdate_key(pet_a: str, pet_b: str) -> str:
    """One match per pair of playmates, whichever liked first."""
    return "playdate:" + ":".join(sorted((pet_a, pet_b)))


def adoption_key(interest_id: str) -> str:
    return f"adoption:{interest_id}"


def may_see_match(caller: Principal, users: Sequence[str]) -> bool:
    """Only the two participants and admins see a match; to anyone else it does not exist."""
    return caller.user_id in users or caller.is_admin
