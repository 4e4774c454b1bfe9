"""The recommender as a module of the mesh: its copy of pets and interactions from events, RankPets,
the model loaded at start and the periodic training job."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.events import Effects
from mesh.resources import parse_name
from mesh.registry import ServiceSpec
from mesh.runtime import Runtime, ServiceModule
from ml.recommender import scoring, store
from ml.recommender.api import RecommenderServicer
from ml.recommender.catalogue import month_index
from ml.recommender.engine import Engine
from ml.recommender.model import ADOPTION, LIKE, MATCH, SUPER_LIKE
from petplatform.matching.v1 import events_pb2 as matching_events
from petplatform.matching.v1 import matching_pb2
from petplatform.pet.v1 import events_pb2 as pet_events
from petplatform.pet.v1 import pet_pb2

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
SWIPE_WEIGHTS = {matching_pb2.SWIPE_ACTION_LIKE: LIKE, matching_pb2.SWIPE_ACTION_SUPER_LIKE: SUPER_LIKE}


def pet_id(name: str) -> str:
    return parse_name(name, "pets/{}", "pet")[0]


def user_id(name: str) -> str:
    return parse_name(name, "users/{}", "user")[0]


def _enum(value: int, top: int) -> int:
    return value if 0 <= value < top else 0  # a value newer than this code reads as unknown


def features(pet: pet_pb2.Pet) -> dict:
    """A pet as the recommender keeps it."""
    born = None
    if pet.HasField("birth_date") and pet.birth_date.year:
        born = month_index(dt.date(pet.birth_date.year, max(pet.birth_date.month, 1), 1))
    located = pet.HasField("location")
    return {"species": _enum(pet.species, scoring.N_SPECIES), "size": _enum(pet.size, scoring.N_SIZES),
            "energy": _enum(pet.energy, scoring.N_ENERGY), "birth_month": born,
            "latitude": pet.location.latitude if located else None,
            "longitude": pet.location.longitude if located else None,
            "good_with_children": pet.good_with_children, "good_with_pets": pet.good_with_dogs or pet.good_with_cats,
            "listing": int(pet.listing), "status": int(pet.status),
            "owner_id": pet.owner.removeprefix("users/")}


def _time(pet: pet_pb2.Pet) -> dt.datetime | None:
    return pet.update_time.ToDatetime(dt.timezone.utc) if pet.HasField("update_time") else None


async def on_pet_changed(s: AsyncSession, event: pet_events.PetCreated | pet_events.PetUpdated) -> None:
    await store.put_pet(s, pet_id(event.pet.name), features=features(event.pet), update_time=_time(event.pet))


async def on_pet_deleted(s: AsyncSession, event: pet_events.PetDeleted) -> None:
    await store.delete_pet(s, pet_id(event.pet.name))


def _swipe_time(swipe: matching_pb2.Swipe) -> dt.datetime:
    # Without one (never, from matching), the epoch: any swipe with a time is later.
    return swipe.create_time.ToDatetime(dt.timezone.utc) if swipe.HasField("create_time") else EPOCH


async def on_swipe(s: AsyncSession, event: matching_events.SwipeRecorded) -> None:
    swipe = event.swipe
    # A pass is kept (weight 0): it is no signal of taste, and it replaces a like undone and swiped again.
    await store.record(s, user_id=user_id(swipe.user), pet_id=pet_id(swipe.pet), source="swipe",
                       action=int(swipe.action), weight=SWIPE_WEIGHTS.get(swipe.action, 0.0), swipe=swipe.name,
                       create_time=_swipe_time(swipe))


async def on_swipe_undone(s: AsyncSession, event: matching_events.SwipeUndone) -> None:
    await store.undo_swipe(s, user_id=user_id(event.swipe.user), pet_id=pet_id(event.swipe.pet),
                           swipe=event.swipe.name, create_time=_swipe_time(event.swipe))


async def on_match(s: AsyncSession, event: matching_events.MatchCreated) -> None:
    """Adoption: the adopter (users[1]) and the pet. Playdate: each person and the other's pet."""
    m = event.match
    created = m.create_time.ToDatetime(dt.timezone.utc) if m.HasField("create_time") else None
    pairs = []
    if m.kind == matching_pb2.Match.KIND_ADOPTION and len(m.users) == 2 and m.pets:
        pairs = [(m.users[1], m.pets[0])]
    elif m.kind == matching_pb2.Match.KIND_PLAYDATE and len(m.users) == 2 and len(m.pets) == 2:
        pairs = [(m.users[0], m.pets[1]), (m.users[1], m.pets[0])]
    for user, pet in pairs:
        await store.record(s, user_id=user_id(user), pet_id=pet_id(pet), source="match", action=0, weight=MATCH,
                           create_time=created)


async def on_adoption(s: AsyncSession, event: matching_events.AdoptionCompleted) -> None:
    m = event.match
    if len(m.users) == 2 and m.pets:
        when = m.end_time.ToDatetime(dt.timezone.utc) if m.HasField("end_time") else None
        await store.record(s, user_id=user_id(m.users[1]), pet_id=pet_id(m.pets[0]), source="adoption", action=0,
                           weight=ADOPTION, create_time=when)


class RecommenderModule(ServiceModule):
    migrations = Path(__file__).parent / "migrations"

    def __init__(self, rt: Runtime, spec: ServiceSpec):
        super().__init__(rt, spec)
        self.engine = Engine(self.db, rt.blobs)
        self._job: asyncio.Task | None = None

    def servicers(self) -> Mapping[str, object]:
        return {"petplatform.recommender.v1.RecommenderService": RecommenderServicer(self.engine)}

    def consumers(self) -> Mapping[str, Effects]:
        return {
            "recommender.pets": {pet_events.PetCreated: on_pet_changed, pet_events.PetUpdated: on_pet_changed,
                                 pet_events.PetDeleted: on_pet_deleted},
            "recommender.interactions": {matching_events.SwipeRecorded: on_swipe,
                                         matching_events.SwipeUndone: on_swipe_undone,
                                         matching_events.MatchCreated: on_match,
                                         matching_events.AdoptionCompleted: on_adoption},
        }

    async def start(self) -> None:
        await self.engine.catch_up()  # the whole catalogue now, not in the first ranking
        await self.engine.load_current()
        period = self.rt.settings.recommender_train_seconds
        if period > 0:
            self._job = asyncio.create_task(self.engine.run_periodically(period), name="recommender-training")

    async def drain(self) -> None:
        if self._job:
            self._job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._job
