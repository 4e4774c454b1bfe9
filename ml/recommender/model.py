"""The trained model: item factors from a truncated SVD of the user x pet matrix of implicit feedback,
as a versioned artefact in the blob store. A person's vector is folded in at request time from their
interactions (scoring.collaborative), so the model holds no per-person state and a like made after
training counts at once."""
from __future__ import annotations

import dataclasses
import datetime as dt
import io
import itertools
import json
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD

from mesh.blobs import BlobNotFound, BlobStore

# What each kind of interaction says about a person's taste (the weights of implicit feedback).
LIKE, SUPER_LIKE, MATCH, ADOPTION = 1.0, 2.0, 3.0, 4.0
COLD_START = "cold-start"
PREFIX = "recommender/models"
CURRENT = f"{PREFIX}/CURRENT"  # the version in service, as JSON {"version": ...}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Model:
    version: str
    trained_at: dt.datetime
    pets: list[str]  # row -> `pets/{id}`
    factors: npt.NDArray[np.float32]  # one row of factors per pet
    interactions: int  # how many it was trained on

    @property
    def index(self) -> dict[str, int]:
        cached: dict[str, int] | None = self.__dict__.get("_index")
        if cached is None:
            cached = {name: i for i, name in enumerate(self.pets)}
            object.__setattr__(self, "_index", cached)
        return cached

    def rows_of(self, names: Iterable[str]) -> npt.NDArray[np.int64]:
        return np.fromiter(map(self.index.get, names, itertools.repeat(-1)), np.int64)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        meta = {"version": self.version, "trained_at": self.trained_at.isoformat(), "interactions": self.interactions}
        np.savez_compressed(buf, factors=self.factors, pets=np.asarray(self.pets, dtype=np.str_),
                            meta=np.asarray(json.dumps(meta)))
        return buf.getvalue()

    @staticmethod
    def from_bytes(data: bytes) -> Model:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:  # no pickles: an artefact is data, not code
            meta = json.loads(str(z["meta"]))
            return Model(version=meta["version"], trained_at=dt.datetime.fromisoformat(meta["trained_at"]),
                         pets=[str(p) for p in z["pets"]], factors=z["factors"].astype(np.float32),
                         interactions=int(meta["interactions"]))


def version_at(when: dt.datetime) -> str:
    return f"hybrid-{when.astimezone(dt.timezone.utc):%Y%m%dT%H%M%S%f}Z"


def factorise(users: list[str], pets: list[str], weights: list[float], *, components: int = 32,
              seed: int = 0) -> tuple[list[str], npt.NDArray[np.float32]]:
    """(pet names, item factors) from (user, pet, weight) triples; repeated pairs add up. Each person's
    row is scaled to unit length so that a few very active people do not make the factors theirs."""
    user_ids = {u: i for i, u in enumerate(dict.fromkeys(users))}
    pet_ids = {p: i for i, p in enumerate(dict.fromkeys(pets))}
    matrix = sp.csr_matrix((np.asarray(weights, np.float64),
                            ([user_ids[u] for u in users], [pet_ids[p] for p in pets])),
                           shape=(len(user_ids), len(pet_ids)))
    matrix.sum_duplicates()
    matrix.data = np.log1p(matrix.data)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    matrix = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix
    # Few factors for little data: near full rank, the factors would only give back what each person liked.
    k = min(components, min(matrix.shape) // 3)
    if k < 1:
        return list(pet_ids), np.zeros((len(pet_ids), 1), np.float32)
    svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7, random_state=seed)
    svd.fit(matrix)
    # Each factor scaled by its singular value: scores are then the low-rank part of the pets' co-occurrence
    # (X'X), so strong shared tastes count more than weak ones. It won over unscaled factors, the square root
    # of the scale, 16 or 64 factors and NMF on both evaluation settings (ml/recommender/evaluation.py).
    return list(pet_ids), (svd.components_.T * svd.singular_values_).astype(np.float32)


def train(triples: Iterable[tuple[str, str, float]], *, now: dt.datetime, components: int = 32) -> Model:
    """A model from (user id, `pets/{id}`, weight) interactions."""
    users, pets, weights = [], [], []
    for u, p, w in triples:
        users.append(u)
        pets.append(p)
        weights.append(w)
    names, factors = factorise(users, pets, weights, components=components) if users else (
        [], np.zeros((0, 1), np.float32))
    return Model(version=version_at(now), trained_at=now, pets=names, factors=factors, interactions=len(users))


class ModelStore:
    """Artefacts under recommender/models/<version>.npz, and which one is in service."""

    def __init__(self, blobs: BlobStore):
        self._blobs = blobs

    async def publish(self, model: Model) -> None:
        """Stores the artefact, then points CURRENT at it: a reader never finds a pointer to nothing."""
        await self._blobs.put(f"{PREFIX}/{model.version}.npz", model.to_bytes(), "application/octet-stream")
        await self._blobs.put(CURRENT, json.dumps({"version": model.version}).encode(), "application/json")

    async def current_version(self) -> str | None:
        try:
            data, _ = await self._blobs.get(CURRENT)
        except BlobNotFound:
            return None
        return str(json.loads(data)["version"])

    async def load(self, version: str) -> Model:
        data, _ = await self._blobs.get(f"{PREFIX}/{version}.npz")
        return Model.from_bytes(data)
