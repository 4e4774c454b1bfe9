"""Matching: its servicer, and its copy of the pets, kept from the pet service's events so the feed
filters locally instead of calling the pet service per request."""
from __future__ import annotations

from collections.abc import Mapping
import datetime as dt
from pathlib import Path
from typing import Any

import grpc

from mesh.events import Effects
from mesh.registry import ServiceSpec
from mesh.runtime import Runtime, ServiceModule
from petplatform.pet.v1 import events_pb2 as pet_events
from petplatform.pet.v1 import pet_pb2
from services.matching import store
from services.matching.api import MatchingServicer
from services.matching.ranking import CircuitBreaker, Ranker


def pet_columns(pet: pet_pb2.Pet) -> dict[str, Any]:
    """The copy's columns of a pet, from the Pet an event carries."""
    birth = None
    if pet.HasField("birth_date") and pet.birth_date.year and pet.birth_date.month:
        birth = dt.date(pet.birth_date.year, pet.birth_date.month, pet.birth_date.day or 1)
    located = pet.HasField("location")
    return {"owner_id": pet.owner.removeprefix("users/"), "species": pet.species, "size": pet.size,
            "birth_date": birth, "listing": pet.listing or pet_pb2.Pet.LISTING_ADOPTION, "status": pet.status,
            "latitude": pet.location.latitude if located else None,
            "longitude": pet.location.longitude if located else None,
            "create_time": pet.create_time.ToDatetime(tzinfo=dt.timezone.utc), "message": pet.SerializeToString(),
            "hidden": pet.moderation in (pet_pb2.Pet.MODERATION_HELD, pet_pb2.Pet.MODERATION_HIDDEN)}


def version(pet: pet_pb2.Pet) -> dt.datetime:
    """The pet service makes every change's update_time later than the last (pet api.next_update_time)."""
    return pet.update_time.ToDatetime(tzinfo=dt.timezone.utc)


async def on_pet_changed(s, event: pet_events.PetCreated | pet_events.PetUpdated) -> None:
    await store.apply_pet(s, pet_id=event.pet.name.removeprefix("pets/"), version=version(event.pet),
                          columns=pet_columns(event.pet))


async def on_pet_deleted(s, event: pet_events.PetDeleted) -> None:
    # Just after the state it deleted, as the pet service's watchers order it.
    await store.apply_pet(s, pet_id=event.pet.name.removeprefix("pets/"),
                          version=version(event.pet) + dt.timedelta(microseconds=1),
                          columns=pet_columns(event.pet), deleted=True)


class MatchingModule(ServiceModule):
    migrations = Path(__file__).parent / "migrations"

    def __init__(self, rt: Runtime, spec: ServiceSpec):
        super().__init__(rt, spec)
        s = rt.settings
        self.ranker = Ranker(self._recommender, deadline=s.matching_ranking_deadline_seconds,
                             breaker=CircuitBreaker(failures=s.matching_breaker_failures,
                                                    cool_down=s.matching_breaker_cool_down_seconds))

    def _recommender(self) -> grpc.aio.Channel:
        return self.rt.channel("recommender")

    def servicers(self) -> Mapping[str, object]:
        return {"petplatform.matching.v1.MatchingService": MatchingServicer(
            self.db, ranker=self.ranker, users=lambda: self.rt.channel("user"), blobs=self.rt.blobs,
            daily_swipe_limit=self.rt.settings.matching_daily_swipe_limit)}

    def consumers(self) -> Mapping[str, Effects]:
        return {"matching.pets": {pet_events.PetCreated: on_pet_changed, pet_events.PetUpdated: on_pet_changed,
                                  pet_events.PetDeleted: on_pet_deleted}}
