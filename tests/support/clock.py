"""A clock the test moves, for the in-process cache and what is built on it."""
from __future__ import annotations


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
