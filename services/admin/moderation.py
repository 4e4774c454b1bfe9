"""Cases: opened by reports and fraud scores, one undecided case per subject, and the actions taken on
them, each published as moderation.action_taken in the transaction that records it."""
from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.events import emit
from mesh.sql import Row
from petplatform.admin.v1 import admin_pb2 as a
from petplatform.admin.v1 import events_pb2 as ev
from petplatform.user.v1 import events_pb2 as user_events
from services.admin import audit, domain, store

C = a.Case
Action = ev.ModerationActionTaken


async def case_for(s: AsyncSession, *, subject: str, user_id: str, now: dt.datetime) -> Row:
    """The subject's undecided case, locked, or a new one. A concurrent first report or score for the
    subject fails on the open-subject key (IntegrityError): the caller's transaction is retried and
    then finds the winner's case."""
    row = await store.open_case_of(s, subject, lock=True)
    if row is None:
        cid = domain.case_id(now)
        await store.add_case(s, id=cid, subject=subject, user_id=user_id, state=C.STATE_OPEN, priority=0,
                             report_count=0, risk_score=0.0, assignee_id="", held=False, resolution=0,
                             create_time=now, update_time=now)
        row = await store.get_case(s, cid)
    elif user_id and not row.user_id:
        await store.update_case(s, row.id, user_id=user_id)
        row = await store.get_case(s, row.id)
    return row


async def reprioritise(s: AsyncSession, case: Row, *, now: dt.datetime, report_count: int | None = None,
                       risk_score: float | None = None) -> None:
    reports = case.report_count if report_count is None else report_count
    risk = case.risk_score if risk_score is None else max(case.risk_score, risk_score)
    await store.update_case(s, case.id, report_count=reports, risk_score=risk, update_time=now,
                            priority=domain.priority(risk_score=risk, report_count=reports))


async def act(s: AsyncSession, case: Row, *, action: int, reason: str, actor_id: str, reversal: bool,
              now: dt.datetime) -> None:
    """Records an action on a case and publishes it."""
    await store.add_action(s, case_id=case.id, action=action, reason=reason, actor_id=actor_id, reversal=reversal,
                           create_time=now)
    await emit(s, ev.ModerationActionTaken(
        case=f"cases/{case.id}", subject=case.subject, user=f"users/{case.user_id}" if case.user_id else "",
        action=action, reason=reason, actor=f"users/{actor_id}" if actor_id else "", reversal=reversal,  # type: ignore[arg-type]
        upheld=not reversal and action in domain.UPHELD))


async def resolve(s: AsyncSession, case: Row, *, action: int, reason: str, actor_id: str, now: dt.datetime) -> None:
    """Decides an undecided case: the decision, the hold lifted when the decision clears the listing,
    and each upheld report about a user published as user.reported (the user service's trust score)."""
    await act(s, case, action=action, reason=reason, actor_id=actor_id, reversal=False, now=now)
    held = case.held
    if held and action in domain.LIFTS_HOLD:
        await act(s, case, action=Action.ACTION_HOLD_LISTING, reason=reason, actor_id=actor_id, reversal=True, now=now)
        held = False
    if action in domain.UPHELD and domain.subject_kind(case.subject) == "user":
        for r in await store.reports_of(s, case.id):
            await emit(s, user_events.UserReported(user=case.subject, report=f"reports/{r.id}"))
    await store.update_case(s, case.id, state=C.STATE_RESOLVED, open_subject=None, resolution=action, held=held,
                            assignee_id=case.assignee_id or actor_id, update_time=now)


async def reverse(s: AsyncSession, case: Row, *, reason: str, actor_id: str, now: dt.datetime) -> int:
    """Undoes the decision in force (and the automatic hold with it), else the automatic hold; the case
    opens again, unclaimed. The
    action undone; 0 when there was none to undo (a dismissal, an undecided case without a hold), or
    when the subject has another undecided case already (it would have two)."""
    if case.state == C.STATE_RESOLVED and case.resolution not in (0, Action.ACTION_DISMISS):
        undone = case.resolution
        if await store.open_case_of(s, case.subject) is not None:
            return 0
    elif case.state in domain.UNDECIDED and case.held:
        undone = Action.ACTION_HOLD_LISTING
    else:
        return 0
    await act(s, case, action=undone, reason=reason, actor_id=actor_id, reversal=True, now=now)
    if case.held and undone != Action.ACTION_HOLD_LISTING:
        # A decision undone lifts the hold with it: the pet service shows a listing on any reversal of the
        # case that hid it, and an admin's reversal says the listing was wrongly kept from view.
        await act(s, case, action=Action.ACTION_HOLD_LISTING, reason=reason, actor_id=actor_id, reversal=True,
                  now=now)
    await store.update_case(s, case.id, state=C.STATE_OPEN, open_subject=case.subject, assignee_id="", resolution=0,
                            held=False, update_time=now)
    return undone


async def record(s: AsyncSession, *, kind: int, actor_id: str, action: str, target: str, detail: str,
                 now: dt.datetime) -> None:
    await audit.append(s, kind=kind, actor=f"users/{actor_id}" if actor_id else "", action=action, target=target,
                       detail=detail, now=now)
