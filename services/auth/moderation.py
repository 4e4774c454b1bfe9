"""Account status and role changes, for staff RPCs and moderation decisions alike: the row, the sessions ended,
the event, all in the caller's transaction."""
from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from mesh import client_address
from mesh.revocation import Revocations
from mesh.events import emit
from mesh.resources import timestamp
from mesh.sql import Row, utcnow
from petplatform.auth.v1 import events_pb2 as auth_events
from services.auth import domain, store


async def end_sessions(s: AsyncSession, revocations: Revocations, account_id: str, *, access_token_ttl: int) -> int:
    """Ends every live session of an account: refresh tokens in this transaction, access tokens through the
    revocation list every interceptor checks. The list is written before the commit: should the commit fail,
    the sessions are only ended early (and the caller's retry or the event's redelivery ends them in the
    database too)."""
    now = utcnow()
    ids = [r.id for r in await store.live_sessions(s, account_id, now)]
    for session_id in ids:
        await store.revoke_refresh_token_family(s, session_id, now)
        await revocations.revoke(session_id, ttl_seconds=access_token_ttl + 60)
    return len(ids)


async def change_status(s: AsyncSession, revocations: Revocations, account: Row, *, status: str, reason: str,
                        actor: str, case: str, access_token_ttl: int, end_time: dt.datetime | None = None) -> bool:
    """Sets an account's status (the row locked by the caller) and emits user.status_changed; a suspension or
    ban ends its sessions. `end_time`: when a suspension ends by itself. False, changing nothing, when it has
    that status (and end) already (a replay, a repeat)."""
    if account.status == status and account.status_end_time == end_time:
        return False
    await store.set_status(s, account.id, status=status, reason="" if status == "active" else reason,
                           case=case or None, now=utcnow(), end_time=end_time)
    if status != "active":
        await end_sessions(s, revocations, account.id, access_token_ttl=access_token_ttl)
    await emit(s, auth_events.UserStatusChanged(
        user=f"users/{account.id}", status=domain.STATUSES[status], previous_status=domain.STATUSES[account.status],
        reason=reason, actor=actor, case=case, end_time=timestamp(end_time)))
    return True


async def end_lapsed_suspension(s: AsyncSession, revocations: Revocations, account_id: str, *,
                                access_token_ttl: int) -> bool:
    """Reinstates an account whose suspension has reached its end time (and tells, in user.status_changed, so
    that the pets held for it come back); False when it is not, or no longer, such an account."""
    account = await store.lock_account(s, account_id)
    if account is None or not domain.suspension_lapsed(account, utcnow()):
        return False
    return await change_status(s, revocations, account, status="active", reason="the suspension ended", actor="",
                               case="", access_token_ttl=access_token_ttl)


async def security_event(s: AsyncSession, kind: int, *, user_id: str | None,
                         detail: str) -> None:
    """security.event_recorded, for the audit log: one outbox row, never a password or a token in it."""
    await emit(s, auth_events.SecurityEventRecorded(
        kind=cast(Any, kind), user=f"users/{user_id}" if user_id else "", detail=detail,
        client_address=client_address.current()))
