"""`petplatform run`, once serving: what startup made is left out of later garbage collections, its garbage
collected first."""
from __future__ import annotations

import gc
import weakref

from app.cli import freeze_startup_heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_startup_garbage_is_collected_and_the_rest_frozen():
    kept = Node()
    garbage = Node()
    garbage.other = Node()
    garbage.other.other = garbage  # a cycle: only a collection frees it
    gone = weakref.ref(garbage)
    del garbage
    try:
        freeze_startup_heap()
        assert gone() is None, "startup's garbage was frozen with the rest"
        assert gc.get_freeze_count() > 0
        assert not any(o is kept for o in gc.get_objects()), "what startup made is still collected"
    finally:
        gc.unfreeze()  # the test session's own heap
    assert any(o is kept for o in gc.get_objects())
