"""The trained model: item factors from implicit-feedback matrix factorisation of the user x pet matrix,
as a versioned artefact in the blob store. A person's vector is folded in at request time from their
interactions (Model.person), so the model holds no per-person state and a like made after training counts
at once.

Served: alternating least squares (Hu, Koren and Volinsky's implicit ALS, the `implicit` library), 16
factors. It won the offline evaluation over a truncated SVD (scikit-learn; factors scaled by their
singular values, which beat unscaled ones, 16 or 64 factors and NMF): `make eval` prints both."""
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
from threadpoolctl import threadpool_limits

from mesh.blobs import BlobNotFound, BlobStore

# What each kind of interaction says about a person's taste (the weights of implicit feedback).
LIKE, SUPER_LIKE, MATCH, ADOPTION = 1.0, 2.0, 3.0, 4.0
COLD_START = "cold-start"
PREFIX = "recommender/models"
CURRENT = f"{PREFIX}/CURRENT"  # the version in service, as JSON {"version": ...}
ALS_FACTORS, ALS_REGULARISATION, ALS_ALPHA, ALS_ITERATIONS = 16, 0.05, 10.0, 15


@dataclasses.dataclass(frozen=True, kw_only=True)
class Model:
    version: str
    trained_at: dt.datetime
    pets: list[str]  # row -> `pets/{id}`
    factors: npt.NDArray[np.float32]  # one row of factors per pet
    interactions: int  # how many it was trained on
    # ALS: Y'Y + regularisation * I, and the confidence per unit of weight (c = 1 + alpha * w). None: SVD.
    gram: npt.NDArray[np.float64] | None = None
    alpha: float = 0.0

    @property
    def index(self) -> dict[str, int]:
        cached: dict[str, int] | None = self.__dict__.get("_index")
        if cached is None:
            cached = {name: i for i, name in enumerate(self.pets)}
            object.__setattr__(self, "_index", cached)
        return cached

    def rows_of(self, names: Iterable[str]) -> npt.NDArray[np.int64]:
        return np.fromiter(map(self.index.get, names, itertools.repeat(-1)), np.int64)

    def person(self, rows: npt.NDArray[np.int64], weights: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """A person's factors from their interactions (model rows, weights). ALS: the least-squares
        solution ALS itself would compute for them, (Y'Y + Y'(C - I)Y + lambda I) x = Y'C p, one k x k
        solve; SVD: the weighted sum of the pets' factors."""
        liked = self.factors[rows].astype(np.float64)
        if self.gram is None:
            return np.asarray(weights @ liked, np.float64)
        confidence = self.alpha * weights
        return np.asarray(np.linalg.solve(self.gram + (liked.T * confidence) @ liked, liked.T @ (1.0 + confidence)),
                          np.float64)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        meta = {"version": self.version, "trained_at": self.trained_at.isoformat(), "interactions": self.interactions,
                "alpha": self.alpha}
        arrays: dict[str, np.ndarray] = {"factors": self.factors, "pets": np.asarray(self.pets, dtype=np.str_),
                                         "meta": np.asarray(json.dumps(meta))}
        if self.gram is not None:
            arrays["gram"] = self.gram
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types the kwargs as allow_pickle
        return buf.getvalue()

    @staticmethod
    def from_bytes(data: bytes) -> Model:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:  # no pickles: an artefact is data, not code
            meta = json.loads(str(z["meta"]))
            return Model(version=meta["version"], trained_at=dt.datetime.fromisoformat(meta["trained_at"]),
                         pets=[str(p) for p in z["pets"]], factors=z["factors"].astype(np.float32),
                         interactions=int(meta["interactions"]), alpha=float(meta.get("alpha", 0.0)),
                         gram=z["gram"].astype(np.float64) if "gram" in z.files else None)


def version_at(when: dt.datetime) -> str:
    return f"hybrid-{when.astimezone(dt.timezone.utc):%Y%m%dT%H%M%S%f}Z"


def interaction_matrix(users: list[str], pets: list[str], weights: list[float]) -> tuple[list[str], sp.csr_matrix]:
    """(pet names, the user x pet matrix of summed weights)."""
    user_ids = {u: i for i, u in enumerate(dict.fromkeys(users))}
    pet_ids = {p: i for i, p in enumerate(dict.fromkeys(pets))}
    matrix = sp.csr_matrix((np.asarray(weights, np.float64),
                            ([user_ids[u] for u in users], [pet_ids[p] for p in pets])),
                           shape=(len(user_ids), len(pet_ids)))
    matrix.sum_duplicates()
    return list(pet_ids), matrix


def als(users: list[str], pets: list[str], weights: list[float], *,
        seed: int = 0) -> tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """(pet names, item factors, Y'Y + lambda I) by implicit ALS."""
    from implicit.cpu.als import AlternatingLeastSquares  # imported when training: it loads its native code

    names, matrix = interaction_matrix(users, pets, weights)
    k = max(1, min(ALS_FACTORS, min(matrix.shape) // 3))  # little data: few factors
    with threadpool_limits(1, "blas"):  # implicit's advice: its own threads, single-threaded BLAS
        model = AlternatingLeastSquares(factors=k, regularization=ALS_REGULARISATION, alpha=ALS_ALPHA,
                                        iterations=ALS_ITERATIONS, random_state=seed)
        model.fit(matrix.astype(np.float32), show_progress=False)
    factors = np.asarray(model.item_factors, np.float32)
    wide = factors.astype(np.float64)
    return names, factors, wide.T @ wide + ALS_REGULARISATION * np.eye(factors.shape[1])


def svd(users: list[str], pets: list[str], weights: list[float], *, components: int = 32,
        seed: int = 0) -> tuple[list[str], npt.NDArray[np.float32]]:
    """(pet names, item factors) by a truncated SVD of the log-scaled matrix, each person's row scaled
    to unit length (so a few very active people do not make the factors theirs)."""
    names, matrix = interaction_matrix(users, pets, weights)
    matrix.data = np.log1p(matrix.data)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    matrix = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix)
    # Few factors for little data: near full rank, the factors would only give back what each person liked.
    k = min(components, min(matrix.shape) // 3)
    if k < 1:
        return names, np.zeros((len(names), 1), np.float32)
    fitted = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7, random_state=seed).fit(matrix)
    # Scaled by the singular values: scores are then the low-rank part of the pets' co-occurrence (X'X).
    return names, (fitted.components_.T * fitted.singular_values_).astype(np.float32)


def train(triples: Iterable[tuple[str, str, float]], *, now: dt.datetime, method: str = "als") -> Model:
    """A model from (user id, `pets/{id}`, weight) interactions; method "als" (served) or "svd"."""
    users, pets, weights = [], [], []
    for u, p, w in triples:
        users.append(u)
        pets.append(p)
        weights.append(w)
    model = Model(version=version_at(now), trained_at=now, interactions=len(users), pets=[],
                  factors=np.zeros((0, 1), np.float32))
    if not users:
        return model
    if method == "svd":
        names, factors = svd(users, pets, weights)
        return dataclasses.replace(model, pets=names, factors=factors)
    names, factors, gram = als(users, pets, weights)
    return dataclasses.replace(model, pets=names, factors=factors, gram=gram, alpha=ALS_ALPHA)


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
