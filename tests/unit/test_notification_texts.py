"""The texts that tell a person of a status change staff made."""
from __future__ import annotations

import datetime as dt

from petplatform.auth.v1 import auth_pb2
from services.notification.domain import status_notice


def test_a_suspension_with_an_end_says_until_when():
    end = dt.datetime(2026, 12, 3, 14, 30, tzinfo=dt.timezone.utc)
    assert status_notice(auth_pb2.ACCOUNT_STATUS_SUSPENDED, reason="spam", end_time=end) == (
        "Your account is suspended until 2026-12-03 14:30 UTC",
        "Your account is suspended until 2026-12-03 14:30 UTC: spam")
    assert status_notice(auth_pb2.ACCOUNT_STATUS_SUSPENDED, reason="spam") == (
        "Your account is suspended", "Your account is suspended: spam")
    assert status_notice(auth_pb2.ACCOUNT_STATUS_ACTIVE, reason="the suspension ended", end_time=end) == (
        "Your account is reinstated", "Your account was reinstated: the suspension ended")
