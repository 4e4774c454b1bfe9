from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mesh.errors import ApiError
from mesh.events import Effects, PoisonEvent
from mesh.registry import ServiceSpec
from mesh.resources import parse_name
from mesh.runtime import Listener, Runtime, ServiceModule
from petplatform.admin.v1 import events_pb2 as admin_events
from petplatform.auth.v1 import auth_pb2
from petplatform.auth.v1 import events_pb2 as auth_events
from petplatform.matching.v1 import events_pb2 as matching_events
from petplatform.pet.v1.pet_pb2 import Pet
from services.pet.api import PetServicer
from services.pet.cache import PetCache
from services.pet.watch import WATCHED, WatchHub


AccountStatus = auth_pb2.AccountStatus


class PetModule(ServiceModule):
    migrations = Path(__file__).parent / "migrations"

    def __init__(self, rt: Runtime, spec: ServiceSpec):
        super().__init__(rt, spec)
        self.hub = WatchHub(rt.settings.watch_max_streams)
        self.cache = PetCache(size=rt.settings.pet_cache_size, ttl_seconds=rt.settings.pet_cache_ttl_seconds)
        self.servicer = PetServicer(self.db, self.rt.blobs, self.hub, self.cache)

    def servicers(self) -> Mapping[str, object]:
        return {"petplatform.pet.v1.PetService": self.servicer}

    def consumers(self) -> Mapping[str, Effects]:
        return {"pet.adoptions": {matching_events.AdoptionCompleted: self._on_adoption_completed},
                "pet.moderation": {admin_events.ModerationActionTaken: self._on_moderation,
                                   auth_events.UserStatusChanged: self._on_owner_status}}

    async def _on_moderation(self, s, event: admin_events.ModerationActionTaken) -> None:
        """A listing held or hidden in a case, or shown again by that case's reversal; repeats change nothing."""
        Action = admin_events.ModerationActionTaken
        if event.action not in (Action.ACTION_HIDE_LISTING, Action.ACTION_HOLD_LISTING):
            return
        try:
            (pet_id,) = parse_name(event.subject, "pets/{}", "subject")
        except ApiError:
            raise PoisonEvent(f"moderation.action_taken of {event.case} on a listing names no pet: "
                              f"{event.subject!r}") from None
        if event.reversal:
            await self.servicer.show(s, pet_id, source=event.case)
            return
        hidden = event.action == Action.ACTION_HIDE_LISTING
        await self.servicer.hide(s, pet_id, moderation=Pet.MODERATION_HIDDEN if hidden else Pet.MODERATION_HELD,
                                 reason=event.reason, source=event.case)

    async def _on_owner_status(self, s, event: auth_events.UserStatusChanged) -> None:
        """A suspended or banned account's listings are held with it (a scammer's puppies leave at once), and
        shown again when it is reinstated."""
        try:
            (owner_id,) = parse_name(event.user, "users/{}", "user")
        except ApiError:
            raise PoisonEvent(f"user.status_changed names no user: {event.user!r}") from None
        if event.status in (AccountStatus.ACCOUNT_STATUS_SUSPENDED, AccountStatus.ACCOUNT_STATUS_BANNED):
            word = "suspended" if event.status == AccountStatus.ACCOUNT_STATUS_SUSPENDED else "banned"
            await self.servicer.hold_pets_of(s, owner_id, f"the owner's account is {word}")
        elif event.status == AccountStatus.ACCOUNT_STATUS_ACTIVE:
            await self.servicer.release_pets_of(s, owner_id)

    async def _on_adoption_completed(self, s, event: matching_events.AdoptionCompleted) -> None:
        if not event.match.pets:
            raise PoisonEvent(f"adoption.completed of {event.match.name} names no pet")
        (pet_id,) = parse_name(event.match.pets[0], "pets/{}", "match.pets")
        await self.servicer.mark_adopted(s, pet_id)

    def listeners(self) -> Sequence[Listener]:
        return [Listener(kinds=WATCHED, handler=self.hub.on_event, on_gap=self.hub.on_gap),
                Listener(kinds=WATCHED, handler=self.cache.on_event, on_gap=self.cache.clear)]

    async def drain(self) -> None:
        self.hub.close()
