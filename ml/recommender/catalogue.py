"""Each replica's in-memory copy of the pets table as numpy columns, caught up before every ranking with
the rows changed since (store.pets_changed_since): ranking reads arrays, never the database row by row."""
from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence

import numpy as np

from mesh.sql import Row
from ml.recommender.scoring import PetArrays

_INT_COLUMNS = ("species", "size", "energy")
_FLOAT_COLUMNS = ("birth_month", "latitude", "longitude", "popularity")
_BOOL_COLUMNS = ("good_with_children", "good_with_pets", "live")


def month_index(day: dt.date) -> int:
    return day.year * 12 + day.month - 1


class Catalogue:
    """Rows are appended and updated in place, never removed (a deleted pet's row is no longer live), so a
    row number stays valid for the life of the process."""

    def __init__(self, capacity: int = 1024):
        self.seq = 0  # the last change applied
        self.size = 0
        self.names: list[str] = []  # row -> `pets/{id}`
        self.index: dict[str, int] = {}  # `pets/{id}` -> row
        self._cols: dict[str, np.ndarray] = {}
        self._alloc(capacity)
        self.top_popularity = 0.0

    def _alloc(self, capacity: int) -> None:
        new: dict[str, np.ndarray] = {}
        for name in _INT_COLUMNS:
            new[name] = np.zeros(capacity, np.int64)
        for name in _FLOAT_COLUMNS:
            new[name] = np.full(capacity, np.nan)
        for name in _BOOL_COLUMNS:
            new[name] = np.zeros(capacity, np.bool_)
        for name, old in self._cols.items():
            new[name][:self.size] = old[:self.size]
        self._cols = new

    def column(self, name: str) -> np.ndarray:
        return self._cols[name][:self.size]

    def apply(self, rows: Sequence[Row]) -> None:
        """Rows of the pets table changed since `seq`, in seq order (those already applied are skipped)."""
        for r in rows:
            if r.seq <= self.seq:
                continue
            self.put(f"pets/{r.pet_id}", species=r.species, size=r.size, energy=r.energy,
                     birth_month=r.birth_month, latitude=r.latitude, longitude=r.longitude,
                     good_with_children=r.good_with_children, good_with_pets=r.good_with_pets,
                     popularity=r.popularity, live=r.known and not r.deleted)
            self.seq = r.seq

    def put(self, name: str, **values) -> int:
        row = self.index.get(name)
        if row is None:
            if self.size == len(self._cols["species"]):
                self._alloc(2 * self.size)
            row = self.size
            self.size += 1
            self.names.append(name)
            self.index[name] = row
        for key, value in values.items():
            self._cols[key][row] = np.nan if value is None else value
        popularity = values.get("popularity")
        if popularity is not None and popularity > self.top_popularity:
            self.top_popularity = float(popularity)
        return row

    def rows_of(self, names: Iterable[str]) -> np.ndarray:
        """Row of each name, -1 where unknown or not live (deleted, or only heard of through interactions)."""
        rows = np.fromiter(map(self.index.get, names, itertools.repeat(-1)), np.int64)  # no Python frame per name
        known = rows >= 0
        rows[known] = np.where(self._cols["live"][rows[known]], rows[known], -1)
        return rows

    def arrays(self, rows: np.ndarray, today: dt.date) -> PetArrays:
        c = self._cols
        return PetArrays(species=c["species"][rows], size=c["size"][rows], energy=c["energy"][rows],
                         age_months=month_index(today) - c["birth_month"][rows],
                         latitude=c["latitude"][rows], longitude=c["longitude"][rows],
                         good_with_children=c["good_with_children"][rows], good_with_pets=c["good_with_pets"][rows],
                         popularity=c["popularity"][rows])
