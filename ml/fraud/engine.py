"""One replica's fraud scorer: the facts of an account from the store, the model in service (trained at
start and by the periodic job from the store's scored subjects and moderators' labels), assessments of
users, listings and messages, and the emission of fraud.detected when a score crosses a threshold."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.events import emit
from mesh.sql import Database, Row, utcnow
from ml.fraud import features, model, signals, store
from ml.fraud.logs import FraudLogs, LogEntry
from petplatform.fraud.v1 import events_pb2 as fraud_events
from petplatform.fraud.v1 import risk_pb2

log = logging.getLogger(__name__)
ACTIONS: dict[str, fraud_events.FraudDetected.Action] = {
    "none": fraud_events.FraudDetected.ACTION_UNSPECIFIED, "review": fraud_events.FraudDetected.ACTION_REVIEW,
    "hold": fraud_events.FraudDetected.ACTION_HOLD}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Draft:
    """A listing not stored (yet): what ScoreListing was sent."""
    species: int
    breed: str
    text: str


class Engine:
    def __init__(self, db: Database, logs: FraudLogs):
        self.db = db
        self.logs = logs
        self.model: model.Model = model.RULES_ONLY
        self._pending: set[asyncio.Task] = set()  # log writes after commit
        self._unlogged: list[LogEntry] = []  # scores committed, their log entries not yet written

    # --- facts ---

    async def _typical(self, s: AsyncSession, species: int, breed: str) -> float:
        return features.typical_price(species=species, breed_prices=await store.prices(s, species=species, breed=breed),
                                      species_prices=await store.prices(s, species=species, breed=None))

    async def _listing_facts(self, s: AsyncSession, row: Row, reused: int) -> features.ListingFacts:
        return features.ListingFacts(create_time=row.create_time, price=row.price,
                                     typical=await self._typical(s, row.species, row.breed), reused_photos=reused,
                                     copied_text=row.copied_text, flags=store.listing_flags(row))

    async def user_facts(self, s: AsyncSession, user_id: str, *, now: dt.datetime,
                         without_message: str | None = None, without_listing: str | None = None) -> features.UserFacts:
        """What is known of the account; a message or listing being scored anew is left out (it is added as the
        subject)."""
        account = await store.account(s, user_id)
        rows = [r for r in await store.listings_of(s, user_id) if r.pet_id != without_listing]
        reused = await store.reused_counts(s, [r.pet_id for r in rows])
        listings = tuple([await self._listing_facts(s, r, reused.get(r.pet_id, 0)) for r in rows])
        return features.UserFacts(now=now, create_time=account.create_time if account else None, listings=listings,
                                  messages=tuple(await store.messages_of(s, user_id, without=without_message)),
                                  upheld_reports=account.upheld_reports if account else 0,
                                  cancelled_bookings=account.cancelled_bookings if account else 0,
                                  failed_charges=account.failed_charges if account else 0)

    # --- assessments ---

    def _assess(self, x: np.ndarray) -> model.Assessment:
        return model.assess(self.model, x)

    async def assess_user(self, s: AsyncSession, user_id: str, *, now: dt.datetime | None = None) -> model.Assessment:
        """`now`: the time it is scored as of (an event's time, so a backlog is scored as it happened)."""
        return self._assess(features.vector(await self.user_facts(s, user_id, now=now or utcnow())))

    async def assess_listing(self, s: AsyncSession, *, owner_id: str, pet_id: str | None,
                             draft: Draft | None = None, now: dt.datetime | None = None) -> model.Assessment | None:
        """A stored listing (pet_id, its stored content) or a draft; None for a pet_id not stored."""
        now = now or utcnow()
        user = await self.user_facts(s, owner_id, now=now, without_listing=pet_id if draft else None)
        if draft is None:
            row = await store.listing(s, pet_id) if pet_id else None
            if row is None:
                return None
            reused = (await store.reused_counts(s, [row.pet_id])).get(row.pet_id, 0)
            listing = await self._listing_facts(s, row, reused)
        else:
            fp = signals.simhash(draft.text)
            stored = await store.listing(s, pet_id) if pet_id else None
            reused = (await store.reused_counts(s, [stored.pet_id])).get(stored.pet_id, 0) if stored else 0
            listing = features.ListingFacts(
                create_time=stored.create_time if stored else now, price=signals.parse_price(draft.text),
                typical=await self._typical(s, draft.species, draft.breed.strip().lower()), reused_photos=reused,
                copied_text=await store.copied_elsewhere(s, owner_id=owner_id, fingerprint=fp, before=None),
                flags=signals.flags(draft.text))
        return self._assess(features.vector(user, listing=listing))

    async def assess_message(self, s: AsyncSession, *, sender_id: str, name: str | None,
                             flags: dict[str, bool], now: dt.datetime | None = None) -> model.Assessment:
        """A message with these signals.flags (a stored one, or a draft) as sent by the sender."""
        user = await self.user_facts(s, sender_id, now=now or utcnow(), without_message=name)
        return self._assess(features.vector(user, message=flags))

    # --- scoring events ---

    async def record(self, s: AsyncSession, *, subject: str, user_id: str, assessment: model.Assessment,
                     source_event: str) -> None:
        """Keeps the subject's score; emits fraud.detected when its action is above the highest emitted for it
        (a listing edited while under review opens no second case); logs the score once committed."""
        previous = await store.lock_subject(s, subject, user_id=user_id, now=utcnow())
        action = ACTIONS[assessment.action]
        raised = action > previous.action
        if raised:
            await emit(s, fraud_events.FraudDetected(
                subject=subject, user=f"users/{user_id}", score=assessment.score, factors=factors_of(assessment),
                action=action, source_event=source_event, model=assessment.model))
        await store.put_subject(s, subject, user_id=user_id, vector=assessment.features, score=assessment.score,
                                action=action if raised else None, now=utcnow())
        entry = log_entry(user_id=user_id, subject=subject, event=source_event, assessment=assessment)

        def queue(_session: object) -> None:
            # Written by one task, those committed meanwhile together: one log transaction per batch of
            # scores (a group of events scored in one inbox transaction), not one per score.
            self._unlogged.append(entry)
            if len(self._unlogged) == 1:
                task = asyncio.get_running_loop().create_task(self._write_log())
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
        sa_event.listen(s.sync_session, "after_commit", queue, once=True)

    async def _write_log(self) -> None:
        entries, self._unlogged = self._unlogged, []
        try:
            await self.logs.append(*entries)
        except Exception:  # the log records scores; it must not fail scoring (logs.py)
            log.exception("fraud: could not log %d scores (%s …)", len(entries), entries[0].subject)

    async def log(self, *, user_id: str, subject: str, event: str, assessment: model.Assessment) -> None:
        try:
            await self.logs.append(log_entry(user_id=user_id, subject=subject, event=event, assessment=assessment))
        except Exception:  # the log records scores; it must not fail scoring (logs.py)
            log.exception("fraud: could not log the score of %s", subject)

    def after_commit(self, s: AsyncSession, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Runs `work` once the session's transaction commits (not if it rolls back)."""
        def start(_session: object) -> None:
            task: asyncio.Task = asyncio.get_running_loop().create_task(work())
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        sa_event.listen(s.sync_session, "after_commit", start, once=True)

    async def settle(self) -> None:
        """Waits for the log writes started so far (tests; shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    # --- training ---

    async def train(self) -> model.Model:
        async with self.db.read() as s:
            rows = await store.training_set(s)
        x = np.array([r[0] for r in rows], np.float64).reshape(len(rows), len(features.NAMES))
        y = np.array([r[1] for r in rows], np.int64)
        trained = await asyncio.to_thread(model.train, x, y, now=utcnow())
        self.model = trained
        log.info("fraud: serving model %s", trained.version)
        return trained

    async def run_periodically(self, period_seconds: float) -> None:
        while True:
            await asyncio.sleep(period_seconds)
            try:
                await self.train()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fraud training failed; next try in %ss", period_seconds)


def log_entry(*, user_id: str, subject: str, event: str, assessment: model.Assessment) -> LogEntry:
    return LogEntry(id=uuid.uuid4().hex, user=f"users/{user_id}", subject=subject, event=event,
                    score=assessment.score, factors=[dataclasses.asdict(f) for f in assessment.factors],
                    action=assessment.action, model=assessment.model, reviewed=False, create_time=utcnow())


def factors_of(assessment: model.Assessment) -> list[risk_pb2.RiskFactor]:
    return [risk_pb2.RiskFactor(code=f.code, description=f.description, contribution=f.contribution)
            for f in assessment.factors]
