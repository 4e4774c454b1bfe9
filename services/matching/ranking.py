"""The recommender, called with a deadline behind a circuit breaker: when it is slow, failing or
down, the feed is ranked by popularity and distance instead (domain.fallback_score), and after a
cool-down one probe call finds out whether it is back."""
from __future__ import annotations

from collections.abc import Callable, Sequence
import enum
import logging
import time

import grpc
from prometheus_client import Counter

from petplatform.recommender.v1 import recommender_pb2, recommender_pb2_grpc
from petplatform.user.v1 import user_pb2

log = logging.getLogger(__name__)

RANKINGS = Counter("petplatform_matching_feed_rankings_total", "Feeds served, by how they were ranked", ["ranking"])


class BreakerState(enum.Enum):
    CLOSED = "closed"  # calls go through
    OPEN = "open"  # calls are not tried until the cool-down has passed
    HALF_OPEN = "half_open"  # one probe call is in flight; the others wait for its outcome


class CircuitBreaker:
    """Opens after `failures` failed calls in a row; after `cool_down` seconds open, lets one probe
    through: its success closes the breaker, its failure opens it for another cool-down."""

    def __init__(self, *, failures: int, cool_down: float, clock: Callable[[], float] = time.monotonic):
        self._threshold = failures
        self._cool_down = cool_down
        self._clock = clock
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0

    def allow(self) -> bool:
        """Whether to try a call now; a True from an open breaker makes the caller the probe."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and self._clock() - self._opened_at >= self._cool_down:
            self.state = BreakerState.HALF_OPEN
            return True
        return False

    def succeeded(self) -> None:
        self.state = BreakerState.CLOSED
        self._failures = 0

    def failed(self) -> None:
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            if self.state is not BreakerState.OPEN:
                log.warning("recommender circuit breaker opens after %d failures", self._failures)
            self.state = BreakerState.OPEN
            self._opened_at = self._clock()


class Ranker:
    """RankPets for the caller, forwarding their authorization (there is no service identity yet)."""

    def __init__(self, channel: Callable[[], grpc.aio.Channel | None], *, deadline: float, breaker: CircuitBreaker):
        self._channel = channel
        self._deadline = deadline
        self.breaker = breaker

    async def rank(self, *, pets: Sequence[str], preferences: user_pb2.Preferences, authorization: str,
                   max_results: int) -> list[recommender_pb2.RankedPet] | None:
        """The recommender's order of `pets` (names), best first, or None when it cannot say in time."""
        channel = self._channel()
        if channel is None or not pets or not self.breaker.allow():
            return None
        request = recommender_pb2.RankPetsRequest(pets=pets, preferences=preferences,
                                                  max_results=min(max_results, len(pets)))
        settled = False
        try:
            response = await recommender_pb2_grpc.RecommenderServiceStub(channel).RankPets(
                request, timeout=self._deadline, metadata=(("authorization", authorization),))
            self.breaker.succeeded()
            settled = True
            return list(response.pets)
        except grpc.aio.AioRpcError as e:
            self.breaker.failed()
            settled = True
            log.warning("recommender failed (%s: %s); ranking by popularity", e.code().name, e.details())
            return None
        finally:
            if not settled:  # cancelled mid-call: a probe must not leave the breaker half open forever
                self.breaker.failed()
