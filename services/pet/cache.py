"""A replica's cache of GetPet answers, kept correct by the pet service's own events.

- Every replica hears every pet.created/updated/deleted (a broadcast Listener, as the watch streams do) and
  drops that pet; a write also drops it on its own replica at once, after its commit.
- A read that began before a pet was dropped does not put what it read back (its ticket is older than the
  drop): an answer read before a change cannot outlive the change's event.
- Events missed (a broker reconnection: on_gap) empty the cache; a TTL bounds what any entry may have
  missed otherwise (and the photos' signed URLs, and age_months across midnight), and an LRU bound its size.
- Read-your-writes: only a pet's owner or an admin can change it, and they never get a cached answer for
  it (PetServicer.GetPet), so a writer sees their write on every replica even before its event arrives.

Beside the answers, built Pet messages by version (its update_time, which every change moves on), for
ListPets' pages: the page's rows come from the database each time, and a pet is built again only when the
row's update_time is not the one kept; a version cannot go stale, so these need no ticket. They are dropped
and emptied with the answers (memory), and bounded by the same size and TTL (the signed photo URLs,
age_months across midnight).
"""
from __future__ import annotations

import collections
import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import Counter

from petplatform.common.v1 import event_pb2
from petplatform.pet.v1 import pet_pb2
from services.pet.watch import change_of

LOOKUPS = Counter("petplatform_cache_lookups_total", "Cache lookups, by cache and result (hit or miss)",
                  ["cache", "result"])
_ANSWER_HIT, _ANSWER_MISS = LOOKUPS.labels("pet_answers", "hit"), LOOKUPS.labels("pet_answers", "miss")
_VERSION_HIT, _VERSION_MISS = LOOKUPS.labels("pet_versions", "hit"), LOOKUPS.labels("pet_versions", "miss")

# How many recent drops are remembered one by one; older ones count as one floor (see _dropped_at).
REMEMBERED_DROPS = 10_000


class PetCache:
    def __init__(self, *, size: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic):
        """size 0: nothing is cached."""
        self._size = size
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: collections.OrderedDict[str, tuple[pet_pb2.GetPetResponse, float]] = collections.OrderedDict()
        self._epoch = 0  # counts drops
        self._drops: collections.OrderedDict[str, int] = collections.OrderedDict()  # pet id -> epoch of its drop
        self._floor = 0  # every drop forgotten (or a clear) happened at or before this epoch
        # pet id -> (update_time, built pet, expiry)
        self._versions: collections.OrderedDict[str, tuple[dt.datetime, pet_pb2.Pet, float]] = \
            collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, pet_id: str) -> pet_pb2.GetPetResponse | None:
        """The cached answer (shared: not to be changed), if it is there and fresh."""
        entry = self._entries.get(pet_id)
        if entry is None:
            _ANSWER_MISS.inc()
            return None
        if entry[1] <= self._clock():
            del self._entries[pet_id]
            _ANSWER_MISS.inc()
            return None
        self._entries.move_to_end(pet_id)
        _ANSWER_HIT.inc()
        return entry[0]

    def versions(self, rows: Sequence[Any]) -> dict[str, pet_pb2.Pet]:
        """version() of each row (its id and update_time) by id, those kept and fresh only."""
        now = self._clock()
        found = {}
        kept = self._versions
        for r in rows:
            pet_id = r.id  # a Row's attribute is a lookup by name: once each
            entry = kept.get(pet_id)
            if entry is not None and entry[2] > now and entry[0] == r.update_time:
                kept.move_to_end(pet_id)
                found[pet_id] = entry[1]
        _VERSION_HIT.inc(len(found))
        if missed := len(rows) - len(found):
            _VERSION_MISS.inc(missed)
        return found

    def keep_version(self, pet_id: str, update_time: dt.datetime, pet: pet_pb2.Pet) -> None:
        """`pet`, built from its row as of update_time (read in one snapshot with the photos)."""
        if not self._size:
            return
        self._versions[pet_id] = (update_time, pet, self._clock() + self._ttl)
        self._versions.move_to_end(pet_id)
        while len(self._versions) > self._size:
            self._versions.popitem(last=False)

    def ticket(self) -> int:
        """Taken before reading the database: put() accepts what was read only if the pet was not dropped since."""
        return self._epoch

    def put(self, pet_id: str, answer: pet_pb2.GetPetResponse, ticket: int) -> None:
        if not self._size or self._dropped_at(pet_id) > ticket:
            return
        self._entries[pet_id] = (answer, self._clock() + self._ttl)
        self._entries.move_to_end(pet_id)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def drop(self, pet_id: str) -> None:
        """The pet changed (or may have): its entry goes, and reads begun before now will not put it back."""
        self._epoch += 1
        self._entries.pop(pet_id, None)
        self._versions.pop(pet_id, None)
        self._drops[pet_id] = self._epoch
        self._drops.move_to_end(pet_id)
        while len(self._drops) > REMEMBERED_DROPS:
            _, epoch = self._drops.popitem(last=False)
            self._floor = max(self._floor, epoch)

    def clear(self) -> None:
        """Events may have been missed: nothing cached, nor being read now, can be trusted."""
        self._epoch += 1
        self._floor = self._epoch
        self._entries.clear()
        self._versions.clear()
        self._drops.clear()

    def heard_of(self, pet_id: str) -> bool:
        """Whether a change of the pet was heard lately (its event, or a write here): for tests."""
        return pet_id in self._drops

    def _dropped_at(self, pet_id: str) -> int:
        return max(self._drops.get(pet_id, 0), self._floor)

    async def on_event(self, body: bytes) -> None:
        """A Listener's handler: pet.created, pet.updated or pet.deleted, from any replica."""
        (before, after), _ = change_of(event_pb2.EventEnvelope.FromString(body))
        pet = after or before
        assert pet is not None  # every change has the pet before or after it
        self.drop(pet.name.removeprefix("pets/"))
