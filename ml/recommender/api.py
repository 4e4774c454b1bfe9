"""RecommenderService: RankPets checks who may rank for whom and what was sent, then ranks against the
replica's catalogue and the model in service (engine.py)."""
from __future__ import annotations

import grpc
import numpy as np

from mesh import errors, principal
from mesh.resources import parse_name
from ml.recommender import scoring, wire
from ml.recommender.engine import Engine
from ml.recommender.ranker import Ranking
from petplatform.recommender.v1 import recommender_pb2, recommender_pb2_grpc
from petplatform.user.v1 import user_pb2

MAX_CANDIDATES = 10_000


def whom(request_user: str) -> str:
    """The user id to rank for: the caller, or (admins only) anyone."""
    caller = principal.require()
    if request_user in ("", "users/me"):
        return caller.user_id
    user_id = parse_name(request_user, "users/{}", "user")[0]
    if user_id != caller.user_id and not caller.is_admin:
        raise errors.permission_denied("you can only rank pets for yourself")
    return user_id


def check_candidates(pets: list[str], max_results: int) -> None:
    if len(pets) > MAX_CANDIDATES:
        raise errors.invalid_argument(("pets", f"at most {MAX_CANDIDATES} candidates, got {len(pets)}"))
    if len(set(pets)) != len(pets):
        raise errors.invalid_argument(("pets", "must not repeat a pet"))
    if not 0 <= max_results <= MAX_CANDIDATES:
        raise errors.invalid_argument(("max_results", f"must be between 1 and {MAX_CANDIDATES} (0: all)"))


def person(prefs: user_pb2.Preferences) -> scoring.Person:
    """The stated preferences as the scoring reads them; out-of-range values are the client's mistake."""
    bad = []
    for field, values, top in (("species", prefs.species, scoring.N_SPECIES), ("sizes", prefs.sizes, scoring.N_SIZES),
                               ("home_type", [prefs.home_type], scoring.N_HOMES)):
        if any(not 0 <= v < top for v in values):
            bad.append((f"preferences.{field}", "unknown enum value"))
    if prefs.min_age_months < 0 or prefs.max_age_months < 0:
        bad.append(("preferences.min_age_months", "ages must not be negative"))
    if prefs.max_age_months and prefs.max_age_months < prefs.min_age_months:
        bad.append(("preferences.max_age_months", "must not be below min_age_months"))
    if not 0 <= prefs.radius_km <= 500:
        bad.append(("preferences.radius_km", "must be between 0 and 500"))
    located = prefs.HasField("location")
    if located and not (-90 <= prefs.location.latitude <= 90 and -180 <= prefs.location.longitude <= 180):
        bad.append(("preferences.location", "latitude must be within ±90 and longitude within ±180"))
    if bad:
        raise errors.invalid_argument(*bad)
    return scoring.Person(
        species=[int(s) for s in prefs.species if s], sizes=[int(s) for s in prefs.sizes if s],
        min_age_months=prefs.min_age_months, max_age_months=prefs.max_age_months,
        latitude=prefs.location.latitude if located else None, longitude=prefs.location.longitude if located else None,
        radius_km=prefs.radius_km, home_type=int(prefs.home_type), has_children=prefs.has_children,
        has_other_pets=prefs.has_other_pets)


def response(names: list[str], ranked: Ranking, version: str, limit: int) -> recommender_pb2.RankPetsResponse:
    """The best `limit` of a ranking. Every name is a pet name: the engine refused any other."""
    order = ranked.order[:limit]
    columns = {field: getattr(ranked, field)[order] for field in wire.NUMBERS}
    columns["distance_km"] = np.nan_to_num(columns["distance_km"])
    out = wire.ranked_pets([names[i] for i in order.tolist()], columns)
    out.model_version = version
    return out


class RecommenderServicer(recommender_pb2_grpc.RecommenderServiceServicer):
    def __init__(self, engine: Engine):
        self.engine = engine

    async def RankPets(self, request: recommender_pb2.RankPetsRequest,
                       context: grpc.aio.ServicerContext) -> recommender_pb2.RankPetsResponse:
        user_id = whom(request.user)
        names = list(request.pets)
        check_candidates(names, request.max_results)
        who = person(request.preferences)
        ranked, version = await self.engine.rank(user_id=user_id, names=names, person=who)
        return response(names, ranked, version, request.max_results or len(names))
