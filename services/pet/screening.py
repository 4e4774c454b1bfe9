"""The fraud service asked about a listing before it is published (ScoreListing, with the owner's own token:
there is no service identity yet, and owners may score their own drafts). Advice, never a gate: when fraud
is slow, down or refuses, the listing is published unscored and the asynchronous path (pet.created → fraud)
still scores it.

A listing fraud says to hold is created HELD with the source SCREENING and a neutral reason (the owner is
not told the factors). It stays held until a case owns it: fraud, seeing pet.created of a listing held here,
raises its own action to a hold (ml/fraud/module.py), so the admin service opens the case and holds the
listing in it; the pet service hands the hold to that case (PetServicer.hide), and the moderator's dismissal
(a reversal of that case's hold) shows it."""
from __future__ import annotations

from collections.abc import Callable
import logging

import grpc
from prometheus_client import Counter

from petplatform.fraud.v1 import fraud_pb2, fraud_pb2_grpc
from petplatform.pet.v1 import pet_pb2

log = logging.getLogger(__name__)

SCREENINGS = Counter("petplatform_pet_screenings_total", "Listings asked about before publishing, by outcome",
                     ["outcome"])  # held, published, unscored
SCREENING = "fraud:screening"  # the moderation source of a listing held here, until its case takes it over


class Screening:
    def __init__(self, channel: Callable[[], grpc.aio.Channel], *, deadline: float):
        self._channel = channel
        self._deadline = deadline

    async def holds(self, pet: pet_pb2.Pet, *, authorization: str) -> bool:
        """Whether fraud advises holding this draft; False when it cannot say within the deadline."""
        draft = pet_pb2.Pet(species=pet.species, breed=pet.breed, display_name=pet.display_name,
                            description=pet.description)
        try:
            response = await fraud_pb2_grpc.FraudServiceStub(self._channel()).ScoreListing(
                fraud_pb2.ScoreListingRequest(listing=draft), timeout=self._deadline,
                metadata=(("authorization", authorization),))
        except grpc.aio.AioRpcError as e:
            SCREENINGS.labels("unscored").inc()
            log.warning("fraud could not score a listing (%s: %s); published unscored", e.code().name, e.details())
            return False
        held = response.assessment.action == fraud_pb2.RISK_ACTION_HOLD
        SCREENINGS.labels("held" if held else "published").inc()
        return held
