"""Admin rules that need no database: subjects, priorities, which action fits which case."""
from __future__ import annotations

import datetime as dt
import re
import secrets

from mesh import errors
from mesh.resources import check_text
from petplatform.admin.v1 import admin_pb2 as a
from petplatform.admin.v1 import events_pb2 as ev

Action = ev.ModerationActionTaken
C = a.Case

# What may be reported (and scored): the subject kinds and their name patterns.
_ID = "[0-9a-f]{32}"
SUBJECT_PATTERNS = {
    "pet": re.compile(rf"^pets/{_ID}$"),
    "user": re.compile(rf"^users/{_ID}$"),
    "message": re.compile(rf"^rooms/{_ID}/messages/[A-Za-z0-9_-]{{1,64}}$"),
    "business": re.compile(rf"^businesses/{_ID}$"),
}
MAX_DETAILS = 2000
MAX_REASON = 1000

# Priority: 100 x the highest risk score plus 10 per reporter (reports count up to 50 of them, so one
# crowd cannot bury every scored case).
RISK_WEIGHT = 100
REPORT_WEIGHT = 10
MAX_COUNTED_REPORTS = 50

# The decisions a moderator may take (the hold is the fraud score's, never a moderator's).
DECISIONS = (Action.ACTION_DISMISS, Action.ACTION_WARN, Action.ACTION_HIDE_LISTING, Action.ACTION_SUSPEND_USER,
             Action.ACTION_BAN_USER)
# Decisions that confirm abuse: the fraud model's positive labels, and what user.reported counts.
UPHELD = frozenset({Action.ACTION_WARN, Action.ACTION_HIDE_LISTING, Action.ACTION_SUSPEND_USER,
                    Action.ACTION_BAN_USER})
# Decisions after which the automatic hold is lifted: the listing was fine (or a warning is enough).
# A hidden listing stays hidden; a suspended or banned account's listing stays held.
LIFTS_HOLD = frozenset({Action.ACTION_DISMISS, Action.ACTION_WARN})
UNDECIDED = (C.STATE_OPEN, C.STATE_IN_REVIEW)


def subject_kind(name: str) -> str | None:
    return next((kind for kind, pattern in SUBJECT_PATTERNS.items() if pattern.match(name)), None)


def check_report(report: a.Report) -> str:
    """The subject's kind; INVALID_ARGUMENT for a bad subject, reason or details."""
    v: list[tuple[str, str]] = []
    kind = subject_kind(report.subject)
    if kind is None:
        v.append(("report.subject", "must be pets/{id}, users/{id}, rooms/{id}/messages/{id} or businesses/{id}"))
    if report.reason == a.REPORT_REASON_UNSPECIFIED or report.reason not in a.ReportReason.values():
        v.append(("report.reason", "must be a defined, specified reason"))
    check_text(v, "report.details", report.details, max_len=MAX_DETAILS)
    if v:
        raise errors.invalid_argument(*v)
    assert kind is not None
    return kind


def check_reason(reason: str, field: str = "reason") -> str:
    v: list[tuple[str, str]] = []
    check_text(v, field, reason, min_len=1, max_len=MAX_REASON)
    if v:
        raise errors.invalid_argument(*v)
    return reason.strip()


def check_action(action: int) -> None:
    """A decision must be one a moderator takes."""
    if action not in DECISIONS:
        raise errors.invalid_argument(("action", "must be ACTION_DISMISS, ACTION_WARN, ACTION_HIDE_LISTING, "
                                                 "ACTION_SUSPEND_USER or ACTION_BAN_USER"))


def check_decision(action: int, *, subject: str, user_id: str) -> None:
    """A decision must fit the case: hiding needs a listing, warning, suspending and banning an account
    behind the subject."""
    if action == Action.ACTION_HIDE_LISTING and subject_kind(subject) != "pet":
        raise errors.failed_precondition("only a pet listing can be hidden", "NOT_A_LISTING", subject=subject)
    if action in (Action.ACTION_WARN, Action.ACTION_SUSPEND_USER, Action.ACTION_BAN_USER) and not user_id:
        raise errors.failed_precondition("the account behind this subject is not known", "USER_UNKNOWN",
                                         subject=subject)


def priority(*, risk_score: float, report_count: int) -> int:
    return round(RISK_WEIGHT * risk_score) + REPORT_WEIGHT * min(report_count, MAX_COUNTED_REPORTS)


def case_id(now: dt.datetime) -> str:
    """32 hex digits that sort by creation: 12 of milliseconds since the epoch, 20 random."""
    return f"{int(now.timestamp() * 1000):012x}{secrets.token_hex(10)}"


def user_id_of(name: str) -> str:
    return name.removeprefix("users/") if name.startswith("users/") else ""
