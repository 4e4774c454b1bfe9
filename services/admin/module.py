"""Admin: its servicer, and what it keeps from other services' events: the accounts and the owners of
pets and messages (who is behind a report), the daily counts of the dashboard, the audit log's
security lines, and the cases fraud scores open."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
import contextlib
import datetime as dt
import logging
from pathlib import Path

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.events import Effects, PoisonEvent, current_event
from mesh.moderation import AUTOMATIC_HOLD_REASON
from mesh.purge import delete_in_batches, purge_periodically
from mesh.registry import ServiceSpec
from mesh.runtime import Runtime, ServiceModule
from mesh.sql import utcnow
from petplatform.admin.v1 import admin_pb2 as a
from petplatform.admin.v1 import events_pb2 as ev
from petplatform.auth.v1 import auth_pb2
from petplatform.auth.v1 import events_pb2 as auth_events
from petplatform.chat.v1 import events_pb2 as chat_events
from petplatform.fraud.v1 import events_pb2 as fraud_events
from petplatform.marketplace.v1 import events_pb2 as market_events
from petplatform.matching.v1 import events_pb2 as matching_events
from petplatform.pet.v1 import events_pb2 as pet_events
from services.admin import domain, moderation, store
from services.admin.api import AdminServicer

log = logging.getLogger(__name__)

E = a.AuditEntry
Action = ev.ModerationActionTaken


def event_time() -> dt.datetime:
    """When the event being applied happened (its envelope's time), so a backlog counts on its own days."""
    envelope = current_event()
    if envelope is not None and envelope.HasField("time"):
        return envelope.time.ToDatetime(dt.timezone.utc)
    return utcnow()


def event_day() -> dt.date:
    return event_time().date()


def day_of(resource: Message) -> dt.date:
    """The UTC day a resource was created (its create_time), else the event's."""
    if resource.HasField("create_time"):
        return resource.create_time.ToDatetime(dt.timezone.utc).date()  # type: ignore[attr-defined]
    return event_day()


# --- accounts: user records, subjects, the audit log ---

async def on_user_created(s: AsyncSession, event: auth_events.UserCreated) -> None:
    user_id = domain.user_id_of(event.user)
    await store.add_user_record(s, id=user_id, email=event.email, display_name=event.display_name,
                                role=auth_pb2.ROLE_USER, status=auth_pb2.ACCOUNT_STATUS_ACTIVE,
                                create_time=event_time())
    await store.remember_subject(s, name=event.user, user_id=user_id)
    await store.count_up(s, day=event_day(), metric="sign_ups")


async def on_role_changed(s: AsyncSession, event: auth_events.UserRoleChanged) -> None:
    await store.update_user_record(s, domain.user_id_of(event.user), role=event.role)
    await moderation.record(s, kind=E.KIND_ROLE_CHANGED, actor_id=domain.user_id_of(event.actor),
                            action="user.role_changed", target=event.user, now=utcnow(),
                            detail=f"role={auth_pb2.Role.Name(event.role)} "
                                   f"previous_role={auth_pb2.Role.Name(event.previous_role)}")


async def on_status_changed(s: AsyncSession, event: auth_events.UserStatusChanged) -> None:
    await store.update_user_record(s, domain.user_id_of(event.user), status=event.status)
    actor_id = domain.user_id_of(event.actor) or await decided_by(s, event.case)
    await moderation.record(s, kind=E.KIND_STATUS_CHANGED, actor_id=actor_id,
                            action="user.status_changed", target=event.user, now=utcnow(),
                            detail=f"status={auth_pb2.AccountStatus.Name(event.status)} "
                                   f"previous_status={auth_pb2.AccountStatus.Name(event.previous_status)} "
                                   f"case={event.case} reason={event.reason}")


async def decided_by(s: AsyncSession, case: str) -> str:
    """The moderator (or admin) behind a status change made in a case: auth's event leaves its actor empty,
    and this service wrote the case's decision or reversal before auth could act on it. Empty for none."""
    if not case.startswith("cases/"):
        return ""
    staff = [row.actor_id for row in await store.actions_of(s, case.removeprefix("cases/")) if row.actor_id]
    return staff[-1] if staff else ""


async def on_security_event(s: AsyncSession, event: auth_events.SecurityEventRecorded) -> None:
    kind = auth_events.SecurityEventRecorded.Kind.Name(event.kind)
    await moderation.record(s, kind=E.KIND_SECURITY_EVENT, actor_id="", action="security.event_recorded",
                            target=event.user, now=utcnow(),
                            detail=f"kind={kind} client_address={event.client_address} detail={event.detail}")


# --- activity: owners of subjects, daily counts ---

async def on_pet_created(s: AsyncSession, event: pet_events.PetCreated) -> None:
    await store.remember_subject(s, name=event.pet.name, user_id=domain.user_id_of(event.pet.owner))
    await store.count_up(s, day=day_of(event.pet), metric="listings")


async def on_message_sent(s: AsyncSession, event: chat_events.MessageSent) -> None:
    sent = (event.message.create_time.ToDatetime(dt.timezone.utc) if event.message.HasField("create_time")
            else event_time())
    await store.remember_subject(s, name=event.message.name, user_id=domain.user_id_of(event.message.sender),
                                 sent_time=sent)
    await store.count_up(s, day=day_of(event.message), metric="messages")


async def on_match_created(s: AsyncSession, event: matching_events.MatchCreated) -> None:
    await store.count_up(s, day=day_of(event.match), metric="matches")


async def on_adoption_completed(s: AsyncSession, event: matching_events.AdoptionCompleted) -> None:
    await store.count_up(s, day=event_day(), metric="adoptions")  # the match's create_time is not the adoption's


async def on_booking_requested(s: AsyncSession, event: market_events.BookingRequested) -> None:
    await store.count_up(s, day=day_of(event.booking), metric="bookings")


# --- fraud scores: cases, evidence, the automatic hold ---

async def on_fraud_detected(s: AsyncSession, event: fraud_events.FraudDetected) -> None:
    """A case for the subject with the score as evidence; on ACTION_HOLD, a listing is held at once
    (an automatic ACTION_HOLD_LISTING, actor empty) until a moderator decides."""
    if domain.subject_kind(event.subject) is None or not 0 <= event.score <= 1:
        raise PoisonEvent(f"fraud.detected with a subject or score out of contract: {event.subject!r} {event.score}")
    now = utcnow()
    user_id = domain.user_id_of(event.user) or (await store.owner_of(s, event.subject) or "")
    case = await moderation.case_for(s, subject=event.subject, user_id=user_id, now=now)
    hold = event.action == fraud_events.FraudDetected.ACTION_HOLD
    if not await store.evidence_of(s, case.id):
        await store.count_up(s, day=now.date(), metric="fraud_cases")
    evidence = a.FraudEvidence(subject=event.subject, score=event.score, factors=event.factors, hold=hold,
                               model=event.model, source_event=event.source_event)
    evidence.create_time.FromDatetime(now)
    await store.add_evidence(s, case_id=case.id, evidence=evidence.SerializeToString())
    await moderation.reprioritise(s, case, now=now, risk_score=event.score)
    if hold and domain.subject_kind(event.subject) == "pet" and not case.held:
        # The reason goes to the owner (pet service, notification); the audit entry keeps score and factors.
        reason = AUTOMATIC_HOLD_REASON
        top = f": {event.factors[0].description}" if event.factors else ""
        case = await store.get_case(s, case.id)
        await moderation.act(s, case, action=Action.ACTION_HOLD_LISTING, reason=reason, actor_id="", reversal=False,
                             now=now)
        await store.update_case(s, case.id, held=True)
        await moderation.record(s, kind=E.KIND_AUTOMATIC_ACTION, actor_id="", action="ACTION_HOLD_LISTING",
                                target=f"cases/{case.id}",
                                detail=f"subject={event.subject} fraud score {event.score:.2f}{top}", now=now)


class AdminModule(ServiceModule):
    migrations = Path(__file__).parent / "migrations"

    def __init__(self, rt: Runtime, spec: ServiceSpec):
        super().__init__(rt, spec)
        self.clock: Callable[[], dt.datetime] = utcnow  # tests move it
        self.report_window = dt.timedelta(days=rt.settings.admin_message_report_days)
        self._purger: asyncio.Task | None = None

    def now(self) -> dt.datetime:
        return self.clock()

    def servicers(self) -> Mapping[str, object]:
        return {"petplatform.admin.v1.AdminService": AdminServicer(
            self.db, marketplace=lambda: self.rt.channel("marketplace"), auth=lambda: self.rt.channel("auth"),
            pets=lambda: self.rt.channel("pet"), now=self.now, report_window=self.report_window)}

    async def start(self) -> None:
        self._purger = asyncio.create_task(purge_periodically(
            self.purge_subjects_once, every_seconds=self.rt.settings.admin_subject_purge_seconds,
            what="subject purge"), name="admin:subject-purge")

    async def stop(self) -> None:
        if self._purger:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        await super().stop()

    async def purge_subjects_once(self) -> int:
        """Forgets who sent the messages that can no longer be reported; returns how many."""
        count = await delete_in_batches(self.db, store.subjects, key=[store.subjects.c.name],
                                        old=store.subjects.c.sent_time < self.now() - self.report_window)
        if count:
            log.info("subjects purged: %d messages past the report window", count)
        return count

    def consumers(self) -> Mapping[str, Effects]:
        return {
            "admin.accounts": {auth_events.UserCreated: on_user_created,
                               auth_events.UserRoleChanged: on_role_changed,
                               auth_events.UserStatusChanged: on_status_changed,
                               auth_events.SecurityEventRecorded: on_security_event},
            "admin.activity": {pet_events.PetCreated: on_pet_created,
                               chat_events.MessageSent: on_message_sent,
                               matching_events.MatchCreated: on_match_created,
                               matching_events.AdoptionCompleted: on_adoption_completed,
                               market_events.BookingRequested: on_booking_requested},
            "admin.fraud": {fraud_events.FraudDetected: on_fraud_detected},
        }
