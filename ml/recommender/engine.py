"""One replica's recommender: its catalogue (caught up before each ranking), the model in service
(loaded at start, swapped atomically), and training (the CLI's and the periodic job's)."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Sequence

import numpy as np

from mesh import errors
from mesh.blobs import BlobStore
from mesh.sql import Database, utcnow
from ml.recommender import store
from ml.recommender.catalogue import Catalogue
from ml.recommender.model import Model, ModelStore, train
from ml.recommender.ranker import Ranking, Serving, rank
from ml.recommender.scoring import Person, Weights

log = logging.getLogger(__name__)
_PET_NAME = re.compile(r"^pets/[0-9a-f]{32}$")


class Engine:
    def __init__(self, db: Database, blobs: BlobStore, *, weights: Weights | None = None):
        self.db = db
        self.models = ModelStore(blobs)
        self.catalogue = Catalogue()
        self.serving = Serving(None)
        self.weights = weights or Weights()

    @property
    def version(self) -> str:
        return self.serving.version

    async def catch_up(self, user_id: str | None = None) -> Sequence:
        """Applies the pet changes since the last call; returns the user's positive interactions."""
        async with self.db.read() as s:
            while rows := await store.pets_changed_since(s, self.catalogue.seq):
                self.catalogue.apply(rows)
            return await store.interactions_of(s, user_id) if user_id else ()

    async def rank(self, *, user_id: str, names: list[str], person: Person) -> tuple[Ranking, str]:
        liked = await self.catch_up(user_id)
        serving = self.serving  # this ranking uses this model, whatever is swapped in meanwhile
        candidates = self.catalogue.rows_of(names)
        for i in np.flatnonzero(candidates < 0).tolist():
            if not _PET_NAME.match(names[i]):
                raise errors.invalid_argument(("pets", f"{names[i]!r} is not a pet name, pets/{{id}}"))
        liked_rows = self.catalogue.rows_of(f"pets/{r.pet_id}" for r in liked)
        liked_weights = np.fromiter((r.weight for r in liked), np.float64, len(liked))
        ranking = rank(self.catalogue, serving, candidates, person, liked_rows, liked_weights,
                       weights=self.weights, today=dt.date.today())
        return ranking, serving.version

    def swap(self, model: Model | None) -> None:
        self.serving = Serving(model)
        log.info("recommender: serving model %s", self.serving.version)

    async def load_current(self) -> bool:
        """Serves the published model if it is not the one in service; True when it swapped."""
        version = await self.models.current_version()
        if version is None or version == self.serving.version:
            return False
        self.swap(await self.models.load(version))
        return True

    async def train(self) -> Model | None:
        """Trains on every interaction so far, publishes the artefact and serves it; None (and the model
        in service stays) when there is nothing to learn from yet."""
        async with self.db.read() as s:
            rows = await store.all_interactions(s)
        if not rows:
            return None
        now = utcnow()
        model = await asyncio.to_thread(train, ((r.user_id, f"pets/{r.pet_id}", r.weight) for r in rows), now=now)
        await self.models.publish(model)
        self.swap(model)
        return model

    async def run_periodically(self, period_seconds: float) -> None:
        """The training job: each period, take up a model published elsewhere (the CLI, another
        replica) or, when the one in service is a period old, train a new one."""
        while True:
            try:
                await self.load_current()
                model = self.serving.model
                if model is None or utcnow() - model.trained_at >= dt.timedelta(seconds=period_seconds):
                    await self.train()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recommender training failed; next try in %ss", period_seconds)
            await asyncio.sleep(period_seconds)
