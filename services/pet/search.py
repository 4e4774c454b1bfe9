"""What a pet search means, written twice side by side: as SQL for ListPets, and as a predicate on a
Pet for WatchPets, which matches each change in memory. A property test holds the two together."""
from __future__ import annotations

import datetime as dt
import functools
import math
from typing import Any, NamedTuple

from google.type import latlng_pb2
import sqlalchemy as sa

from mesh import errors, pagination
from mesh.principal import Principal
from mesh.resources import check_text, parse_name
from petplatform.common.v1 import access_pb2
from petplatform.pet.v1 import pet_pb2
from services.pet import domain
from services.pet.store import pets

EARTH_RADIUS_KM = 6371.0088
MAX_RADIUS_KM = 20000
ORDERS = {"", "create_time desc", "distance"}
MAX_AGE_MONTHS = 12 * 200  # older than any pet; the date arithmetic of the age bounds ends at year 1
MAX_FILTER_VALUES = 20  # per repeated filter: each value is a bound parameter of the query
TEXT_COLUMNS = ("display_name", "breed", "description")


def fold(text: str) -> str:
    """Case-insensitive form of text, by Python's rules (ß = ss, final sigma, dotted I ...)."""
    return text.strip().casefold()


def keys(pet: pet_pb2.Pet) -> dict[str, str]:
    """The stored search columns of a pet: its breed and its words, folded."""
    return {"breed_key": fold(pet.breed), "search_text": "\n".join(fold(getattr(pet, c)) for c in TEXT_COLUMNS)}
FLAGS = ("good_with_children", "good_with_dogs", "good_with_cats")


def check(r: pet_pb2.ListPetsRequest) -> None:
    v: list = []
    if r.order_by not in ORDERS:
        v.append(("order_by", "must be 'create_time desc' or 'distance'"))
    if r.order_by == "distance" and not r.HasField("near"):
        v.append(("near", "required when order_by is 'distance'"))
    if r.HasField("near") and not 0 < r.radius_km <= MAX_RADIUS_KM:
        v.append(("radius_km", f"must be above 0 and at most {MAX_RADIUS_KM} when near is given"))
    if r.radius_km and not r.HasField("near"):
        v.append(("near", "required when radius_km is given"))
    if r.HasField("near") and not (-90 <= r.near.latitude <= 90 and -180 <= r.near.longitude <= 180):
        v.append(("near", "latitude must be within ±90 and longitude within ±180"))
    for field in ("min_age_months", "max_age_months"):
        if not 0 <= getattr(r, field) <= MAX_AGE_MONTHS:
            v.append((field, f"must be between 0 and {MAX_AGE_MONTHS}"))
    if r.max_age_months and r.min_age_months > r.max_age_months:
        v.append(("min_age_months", "must not be above max_age_months"))
    for field in ("species", "sizes", "statuses", "listings"):
        if len(getattr(r, field)) > MAX_FILTER_VALUES:
            v.append((field, f"at most {MAX_FILTER_VALUES} values"))
    if r.owner:
        try:
            parse_name(r.owner, "users/{}", "owner")
        except errors.ApiError:
            v.append(("owner", "must look like users/{id}"))
    check_text(v, "query", r.query, max_len=200)
    check_text(v, "breed", r.breed, max_len=64)
    if v:
        raise errors.invalid_argument(*v)


def listings(r: pet_pb2.ListPetsRequest) -> list[int]:
    """The listings asked for, unspecified read as ADOPTION as on the pets themselves."""
    return sorted({domain.listing(v) for v in r.listings})


# --- SQL, for ListPets ---

def sql_distance_km(lat: sa.ColumnElement[float], lng: sa.ColumnElement[float]) -> sa.ColumnElement[float]:
    """Haversine distance from (lat, lng) to each pet, as a SQL expression (SQLite 3.35+ and PostgreSQL)."""
    f = sa.func
    dlat = (f.radians(pets.c.latitude) - f.radians(lat)) / 2
    dlng = (f.radians(pets.c.longitude) - f.radians(lng)) / 2
    a = (f.sin(dlat) * f.sin(dlat)
         + f.cos(f.radians(lat)) * f.cos(f.radians(pets.c.latitude)) * f.sin(dlng) * f.sin(dlng))
    return 2 * EARTH_RADIUS_KM * f.asin(f.sqrt(a))


class _Shape(NamedTuple):
    """What a page's statement depends on, its values aside (they are its bound parameters)."""
    filters: tuple[bool, ...]  # which of _FILTERS are given
    words: int
    near: bool
    by_distance: bool
    seen: str  # "all" (staff), "visible" (anonymous), "own" (visible, or the caller's own)
    after: bool


# (name of the bound parameter, what it filters): given when the request has it.
_FILTERS = ("species", "sizes", "statuses", "listings", "sex", "breed", *FLAGS, "owner", "age", "max_age")


def _given(r: pet_pb2.ListPetsRequest) -> tuple[bool, ...]:
    return (bool(r.species), bool(r.sizes), bool(r.statuses), bool(r.listings), bool(r.sex), bool(r.breed),
            *(getattr(r, flag) for flag in FLAGS), bool(r.owner), bool(r.min_age_months or r.max_age_months),
            bool(r.max_age_months))


def _like(word: str) -> str:
    """`%word%` for LIKE ... ESCAPE '/', as SQLAlchemy's autoescape writes it (which takes no bound parameter)."""
    return "%" + fold(word).replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


@functools.lru_cache(maxsize=256)
def _statement(shape: _Shape) -> sa.Select[*tuple[Any, ...]]:
    """A page's statement, built once per shape: SQLAlchemy then finds its compiled form without building
    or hashing anything. It selects the pets' id, create_time, update_time and a `sort_key`, in the order of
    mesh.pagination.select_page (by the key, then by id, one row more than a page: `limit`)."""
    p = sa.bindparam
    given = dict(zip(_FILTERS, shape.filters, strict=True))
    dist = sql_distance_km(p("lat", type_=sa.Float), p("lng", type_=sa.Float)) if shape.near else sa.literal(0.0)
    q = sa.select(pets.c.id, pets.c.create_time, pets.c.update_time, dist.label("sort_key"))
    for name, column in (("species", pets.c.species), ("sizes", pets.c.size), ("statuses", pets.c.status),
                         ("listings", pets.c.listing)):
        if given[name]:
            q = q.where(column.in_(p(name, expanding=True)))
    if given["sex"]:
        q = q.where(pets.c.sex == p("sex"))
    if given["breed"]:
        q = q.where(pets.c.breed_key == p("breed"))
    for flag in FLAGS:
        if given[flag]:
            q = q.where(pets.c[flag].is_(True))
    if given["owner"]:
        q = q.where(pets.c.owner_id == p("owner"))
    if given["age"]:
        q = q.where(pets.c.birth_date <= p("born_by"))
        if given["max_age"]:
            q = q.where(pets.c.birth_date > p("born_after"))
    for i in range(shape.words):
        q = q.where(pets.c.search_text.contains(p(f"word{i}"), escape="/"))
    if shape.near:
        # A bounding box the indexes can use (1° of latitude is 111.2 km, so it holds the circle),
        # then the exact great-circle distance.
        q = q.where(pets.c.latitude.between(p("lat_low"), p("lat_high")), dist <= p("radius", type_=sa.Float))
    visible = pets.c.moderation == pet_pb2.Pet.MODERATION_VISIBLE
    if shape.seen == "visible":
        q = q.where(visible)
    elif shape.seen == "own":
        q = q.where(sa.or_(visible, pets.c.owner_id == p("caller")))
    key, descending = (dist, False) if shape.by_distance else (pets.c.create_time, True)
    if shape.after:
        q = q.where(pagination.after((p("after_key"), p("after_id")), key, pets.c.id, descending=descending))
    direction = sa.desc if descending else sa.asc
    return q.order_by(direction(key), direction(pets.c.id)).limit(p("limit", type_=sa.Integer))


def sql(r: pet_pb2.ListPetsRequest, today: dt.date, caller: Principal | None, after: pagination.Position | None,
        size: int) -> tuple[sa.Select[*tuple[Any, ...]], dict[str, Any]]:
    """(statement, its parameters) of a page of pets of search r that the caller may see (visible ones, and
    their own held or hidden ones; staff see all), after position `after` (None: from the start), `size`
    pets and one more; ListPets then builds each pet (or takes it from the cache, by its update_time)."""
    seen = ("all" if caller is not None and caller.admitted(access_pb2.ACCESS_SUPPORT)
            else "visible" if caller is None else "own")
    words = r.query.split()
    near = r.HasField("near")
    statement = _statement(_Shape(_given(r), len(words), near, r.order_by == "distance", seen, after is not None))
    params: dict[str, Any] = {"limit": size + 1}
    if r.species:
        params["species"] = list(r.species)
    if r.sizes:
        params["sizes"] = list(r.sizes)
    if r.statuses:
        params["statuses"] = list(r.statuses)
    if r.listings:
        params["listings"] = listings(r)
    if r.sex:
        params["sex"] = r.sex
    if r.breed:
        params["breed"] = fold(r.breed)
    if r.owner:
        params["owner"] = r.owner.split("/")[1]
    if r.min_age_months or r.max_age_months:
        params["born_by"] = domain.months_ago(today, r.min_age_months)
        if r.max_age_months:
            params["born_after"] = domain.months_ago(today, r.max_age_months + 1)
    for i, word in enumerate(words):
        params[f"word{i}"] = _like(word)
    if near:
        dlat = r.radius_km / 111.0
        params.update(lat=r.near.latitude, lng=r.near.longitude, lat_low=r.near.latitude - dlat,
                      lat_high=r.near.latitude + dlat, radius=r.radius_km)
    if seen == "own":
        assert caller is not None
        params["caller"] = caller.user_id
    if after is not None:
        params["after_key"], params["after_id"] = after
    return statement, params


# --- in memory, for WatchPets ---

def distance_km(a: latlng_pb2.LatLng, b: latlng_pb2.LatLng) -> float:
    r = math.radians
    dlat, dlng = (r(b.latitude) - r(a.latitude)) / 2, (r(b.longitude) - r(a.longitude)) / 2
    h = math.sin(dlat) ** 2 + math.cos(r(a.latitude)) * math.cos(r(b.latitude)) * math.sin(dlng) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def matches(r: pet_pb2.ListPetsRequest, pet: pet_pb2.Pet, today: dt.date, ages: bool = True) -> bool:
    """Whether ListPets with filter r would return this pet (ordering and paging aside); with
    ages=False, whatever the age bounds say."""
    if (r.species and pet.species not in r.species) or (r.sizes and pet.size not in r.sizes):
        return False
    if (r.statuses and pet.status not in r.statuses) or (r.sex and pet.sex != r.sex):
        return False
    if r.listings and domain.listing(pet.listing) not in listings(r):
        return False
    pet_keys = keys(pet)
    if r.breed and pet_keys["breed_key"] != fold(r.breed):
        return False
    if any(getattr(r, flag) and not getattr(pet, flag) for flag in FLAGS):
        return False
    if r.owner and pet.owner != r.owner:
        return False
    if ages and (r.min_age_months or r.max_age_months):
        if not pet.HasField("birth_date"):
            return False
        born, _ = domain.to_date(pet.birth_date)
        if born > domain.months_ago(today, r.min_age_months):
            return False
        if r.max_age_months and born <= domain.months_ago(today, r.max_age_months + 1):
            return False
    if any(fold(word) not in pet_keys["search_text"] for word in r.query.split()):
        return False
    if r.HasField("near"):
        return pet.HasField("location") and distance_km(r.near, pet.location) <= r.radius_km
    return True
