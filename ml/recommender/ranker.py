"""Ranking candidates for one person: every part for every candidate at once (numpy), then the hybrid."""
from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np

from ml.recommender import scoring
from ml.recommender.catalogue import Catalogue
from ml.recommender.model import COLD_START, Model
from ml.recommender.scoring import Floats, Ints, Person, Taste, Weights


class Serving:
    """A model and, for each catalogue row, its row in the model (-1: unseen by the model). Swapping
    models is replacing one Serving by another: one assignment, so a ranking in progress keeps the one
    it started with."""

    def __init__(self, model: Model | None):
        self.model = model
        self.version = model.version if model else COLD_START
        self._rows = np.zeros(0, np.int64)

    def model_rows(self, catalogue: Catalogue) -> Ints:
        """Aligned with the catalogue's rows; extended as the catalogue grows."""
        if self.model is None:
            return np.full(catalogue.size, -1, np.int64)
        if len(self._rows) < catalogue.size:
            more = self.model.rows_of(catalogue.names[len(self._rows):catalogue.size])
            self._rows = np.concatenate([self._rows, more])
        return self._rows


@dataclasses.dataclass(frozen=True)
class Ranking:
    order: Ints  # positions in the candidate list, best first
    score: Floats  # per candidate, in request order (0 for unknown pets)
    content: Floats
    collaborative: Floats
    distance: Floats
    compatibility: Floats
    popularity: Floats
    distance_km: Floats  # NaN where unknown


def rank(catalogue: Catalogue, serving: Serving, candidates: Ints, person: Person, liked_rows: Ints,
         liked_weights: Floats, *, weights: Weights, today: dt.date) -> Ranking:
    """candidates: catalogue rows, -1 for unknown pets (they rank last, every part 0, in request order).
    liked_rows/liked_weights: the catalogue rows of the person's positive interactions, -1 where unknown."""
    n = len(candidates)
    known = candidates >= 0
    rows = candidates[known]
    pets = catalogue.arrays(rows, today)
    taste = None
    liked_known = liked_rows >= 0
    if liked_known.any():
        taste = Taste.of(catalogue.arrays(liked_rows[liked_known], today), liked_weights[liked_known])
    km = scoring.distances_km(pets, person)
    live_popularity = catalogue.column("popularity")
    top = float(np.nanmax(live_popularity)) if catalogue.size else 0.0
    parts = {
        "content": scoring.content(pets, person, taste),
        "distance": scoring.distance(km, person),
        "compatibility": scoring.compatibility(pets, person),
        "popularity": scoring.popularity(np.nan_to_num(pets.popularity), top),
    }
    cf = None
    if serving.model is not None and len(serving.model.pets):
        model_rows = serving.model_rows(catalogue)
        liked_model_rows = np.full(len(liked_rows), -1, np.int64)
        liked_model_rows[liked_known] = model_rows[liked_rows[liked_known]]
        cf = scoring.collaborative(serving.model, model_rows[rows], liked_model_rows, liked_weights)
    w = weights.for_person(has_collaborative=cf is not None)
    parts["collaborative"] = cf if cf is not None else np.zeros(len(rows))
    total = (w.content * parts["content"] + w.collaborative * parts["collaborative"]
             + w.distance * parts["distance"] + w.compatibility * parts["compatibility"]
             + w.popularity * parts["popularity"])
    full = {}
    for name, values in (*parts.items(), ("score", total), ("distance_km", km)):
        column = np.zeros(n)
        column[known] = values
        full[name] = column
    # Unknown pets after every known one (a known pet may score 0 too), each group best first, ties in
    # request order.
    order = np.lexsort((np.arange(n), -full["score"], ~known))
    return Ranking(order=order, **full)
