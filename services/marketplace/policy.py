"""Cancellation policies and the refunds they give (pure functions). Full refund before the cut-off,
half after it (a late cancellation), whoever the owner is; the business cancelling always refunds in
full. Cut-offs are wall-clock times in the business's zone, so a DST change between the cut-off and
the start moves neither."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from petplatform.marketplace.v1 import marketplace_pb2 as m
from services.marketplace.calendar import noon_before

ALWAYS_FLEXIBLE = {m.SERVICE_KIND_WALKING, m.SERVICE_KIND_DAY_CARE}


def effective(kind: int, policy: int) -> int:
    """The policy a service applies: walks and day care are always flexible; unspecified is flexible."""
    if kind in ALWAYS_FLEXIBLE or policy == m.CANCELLATION_POLICY_UNSPECIFIED:
        return m.CANCELLATION_POLICY_FLEXIBLE
    return policy


def cutoff(policy: int, *, start: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """Until when (exclusive, UTC) cancelling refunds in full."""
    if policy == m.CANCELLATION_POLICY_MODERATE:
        return noon_before(start, tz, 1)
    if policy == m.CANCELLATION_POLICY_STRICT:
        return noon_before(start, tz, 7)
    return start


def refund(policy: int, *, paid: int, start: dt.datetime, now: dt.datetime, tz: ZoneInfo,
           by_business: bool = False) -> int:
    """Minor units refunded of `paid`: all before the cut-off or when the business cancels, else
    half (an odd minor unit goes to the owner)."""
    if by_business or now < cutoff(policy, start=start, tz=tz):
        return paid
    return paid - paid // 2
