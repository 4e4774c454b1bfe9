"""The pet read cache on its own: freshness, bounds, and reads racing changes (services/pet/cache.py)."""
from __future__ import annotations

import types

from petplatform.common.v1 import event_pb2
from petplatform.pet.v1 import events_pb2 as pet_events
from petplatform.pet.v1 import pet_pb2
from services.pet import cache as cache_module
from services.pet.cache import PetCache


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def answer(pet_id: str, description: str = "") -> pet_pb2.GetPetResponse:
    return pet_pb2.GetPetResponse(pet=pet_pb2.Pet(name=f"pets/{pet_id}", description=description))


def envelope(event) -> bytes:
    from mesh.events import event_type
    env = event_pb2.EventEnvelope(id="e1", type=event_type(type(event)))
    env.payload.Pack(event)
    return env.SerializeToString()


def test_an_answer_is_kept_until_its_ttl():
    clock = Clock()
    c = PetCache(size=10, ttl_seconds=60, clock=clock)
    c.put("a", answer("a"), c.ticket())
    assert c.get("a").pet.name == "pets/a"
    clock.now += 59.9
    assert c.get("a") is not None
    clock.now += 0.2
    assert c.get("a") is None and len(c) == 0


def test_the_least_recently_used_answer_goes_first():
    c = PetCache(size=2, ttl_seconds=60)
    for k in "ab":
        c.put(k, answer(k), c.ticket())
    c.get("a")
    c.put("c", answer("c"), c.ticket())
    assert c.get("b") is None and c.get("a") is not None and c.get("c") is not None and len(c) == 2


def test_size_zero_keeps_nothing():
    c = PetCache(size=0, ttl_seconds=60)
    c.put("a", answer("a"), c.ticket())
    assert c.get("a") is None


def test_a_read_begun_before_a_change_does_not_put_the_old_answer_back():
    c = PetCache(size=10, ttl_seconds=60)
    c.put("a", answer("a", "old"), c.ticket())
    ticket = c.ticket()  # a reader starts reading the database...
    c.drop("a")  # ...the pet changes meanwhile (its event, or a write on this replica)
    c.put("a", answer("a", "old"), ticket)  # what the reader read may be older than the change
    assert c.get("a") is None
    c.put("a", answer("a", "new"), c.ticket())  # a read begun after the change is kept
    assert c.get("a").pet.description == "new"


def test_a_change_to_another_pet_does_not_stop_a_read():
    c = PetCache(size=10, ttl_seconds=60)
    ticket = c.ticket()
    c.drop("b")
    c.put("a", answer("a"), ticket)
    assert c.get("a") is not None


def test_forgotten_drops_still_stop_reads_begun_before_them(monkeypatch):
    monkeypatch.setattr(cache_module, "REMEMBERED_DROPS", 2)
    c = PetCache(size=10, ttl_seconds=60)
    ticket = c.ticket()
    for k in "abc":  # "a" is forgotten one by one, but counted in the floor
        c.drop(k)
    c.put("a", answer("a"), ticket)
    assert c.get("a") is None


def test_a_gap_in_events_empties_the_cache_and_stops_reads_in_flight():
    c = PetCache(size=10, ttl_seconds=60)
    c.put("a", answer("a"), c.ticket())
    ticket = c.ticket()
    c.clear()
    c.put("b", answer("b"), ticket)
    assert c.get("a") is None and c.get("b") is None
    c.put("b", answer("b"), c.ticket())
    assert c.get("b") is not None


async def test_each_pet_event_drops_its_pet():
    c = PetCache(size=10, ttl_seconds=60)
    for k in "abc":
        c.put(k, answer(k), c.ticket())
    await c.on_event(envelope(pet_events.PetUpdated(pet=pet_pb2.Pet(name="pets/a"), previous=pet_pb2.Pet(
        name="pets/a"))))
    await c.on_event(envelope(pet_events.PetDeleted(pet=pet_pb2.Pet(name="pets/b"))))
    await c.on_event(envelope(pet_events.PetCreated(pet=pet_pb2.Pet(name="pets/c"))))
    assert [c.get(k) for k in "abc"] == [None, None, None]


def version(c: PetCache, pet_id: str, update_time) -> pet_pb2.Pet | None:
    """The pet kept at this version, as ListPets looks it up for a row of its page."""
    return c.versions([types.SimpleNamespace(id=pet_id, update_time=update_time)]).get(pet_id)


def test_a_built_pet_is_kept_by_version_bounded_and_dropped_with_its_answer():
    import datetime as dt
    clock = Clock()
    c = PetCache(size=2, ttl_seconds=60, clock=clock)
    t1 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    t2 = t1 + dt.timedelta(microseconds=1)
    c.keep_version("a", t1, pet_pb2.Pet(name="pets/a", description="v1"))
    assert version(c, "a", t1).description == "v1"
    assert version(c, "a", t2) is None, "another version of the pet is not this one"
    c.keep_version("b", t1, pet_pb2.Pet(name="pets/b"))
    c.keep_version("c", t1, pet_pb2.Pet(name="pets/c"))
    assert version(c, "a", t1) is None, "the least recently used goes past the size"
    clock.now += 60
    assert version(c, "b", t1) is None, "nor past the ttl"
    c.keep_version("c", t2, pet_pb2.Pet(name="pets/c"))
    c.drop("c")
    assert version(c, "c", t2) is None
    c.keep_version("c", t2, pet_pb2.Pet(name="pets/c"))
    c.clear()
    assert version(c, "c", t2) is None
    PetCache(size=0, ttl_seconds=60).keep_version("a", t1, pet_pb2.Pet())  # size 0 keeps nothing, and fails not


def test_hits_and_misses_are_counted_for_the_dashboards():
    from prometheus_client import REGISTRY

    def count(cache: str, result: str) -> float:
        return REGISTRY.get_sample_value("petplatform_cache_lookups_total", {"cache": cache, "result": result}) or 0
    before = {(k, r): count(k, r) for k in ("pet_answers", "pet_versions") for r in ("hit", "miss")}
    clock = Clock()
    c = PetCache(size=10, ttl_seconds=60, clock=clock)
    assert c.get("a") is None
    c.put("a", answer("a"), c.ticket())
    assert c.get("a") is not None
    clock.now += 61
    assert c.get("a") is None  # expired: a miss
    assert count("pet_answers", "hit") - before["pet_answers", "hit"] == 1
    assert count("pet_answers", "miss") - before["pet_answers", "miss"] == 2
    assert count("pet_versions", "miss") == before["pet_versions", "miss"]
    c.keep_version("a", t := clock.now, pet_pb2.Pet(name="pets/a"))
    assert len(c.versions([types.SimpleNamespace(id=i, update_time=t) for i in "abc"])) == 1
    assert count("pet_versions", "hit") - before["pet_versions", "hit"] == 1
    assert count("pet_versions", "miss") - before["pet_versions", "miss"] == 2
