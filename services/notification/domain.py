"""Notification rules on values: pure functions, unit-tested without a server."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Mapping

from mesh import errors
from petplatform.admin.v1 import events_pb2 as admin_events
from petplatform.auth.v1 import auth_pb2
from petplatform.notification.v1 import notification_pb2 as pb
from petplatform.payment.v1 import payment_pb2

KINDS = [k for k in pb.Kind.values() if k != pb.KIND_UNSPECIFIED]
CHANNELS = [c for c in pb.Channel.values() if c != pb.CHANNEL_UNSPECIFIED]
# Until a person chooses: chat messages push only (they come often), the rest also by email; the
# welcome stays in the inbox (auth's verification email already greets them). SMS only when chosen.
DEFAULT_CHANNELS: Mapping[int, tuple[int, ...]] = {
    pb.KIND_MESSAGE: (pb.CHANNEL_PUSH,),
    pb.KIND_MATCH: (pb.CHANNEL_PUSH, pb.CHANNEL_EMAIL),
    pb.KIND_ADOPTION: (pb.CHANNEL_PUSH, pb.CHANNEL_EMAIL),
    pb.KIND_WELCOME: (),
    pb.KIND_MODERATION: (pb.CHANNEL_PUSH, pb.CHANNEL_EMAIL),  # a suspended account cannot open its inbox
    pb.KIND_PAYMENT: (pb.CHANNEL_PUSH, pb.CHANNEL_EMAIL),  # money waiting on them: worth an email
}
MAX_TOKEN = 4096
MAX_PREVIEW = 120  # characters of a chat message shown in its notification
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def device_id(token: str) -> str:
    """A device is its push token: registering the same token again names the same device."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def check_device(device: pb.Device) -> None:
    violations = []
    if device.platform == pb.Device.PLATFORM_UNSPECIFIED or device.platform not in pb.Device.Platform.values():
        violations.append(("device.platform", "required: PLATFORM_ANDROID, PLATFORM_IOS or PLATFORM_WEB"))
    if not device.token.strip():
        violations.append(("device.token", "required"))
    elif len(device.token) > MAX_TOKEN or not all("!" <= c <= "~" for c in device.token):
        violations.append(("device.token", f"at most {MAX_TOKEN} printable ASCII characters, no spaces"))
    if violations:
        raise errors.invalid_argument(*violations)


def channels_of(kinds: Iterable[pb.KindSetting], field: str = "settings.kinds") -> dict[int, tuple[int, ...]]:
    """Kind -> channels, from an update's entries; each kind once, each channel known and once."""
    out: dict[int, tuple[int, ...]] = {}
    violations = []
    for i, k in enumerate(kinds):
        if k.kind not in KINDS:
            violations.append((f"{field}[{i}].kind", "must be a known kind"))
        elif k.kind in out:
            violations.append((f"{field}[{i}].kind", "given twice"))
        bad = [c for c in k.channels if c not in CHANNELS]
        if bad or len(set(k.channels)) != len(k.channels):
            violations.append((f"{field}[{i}].channels", "known channels, each at most once"))
        out[k.kind] = tuple(sorted(set(k.channels)))
    if violations:
        raise errors.invalid_argument(*violations)
    return out


def check_phone(number: str, field: str = "settings.phone_number") -> None:
    if number and not _E164.match(number):
        raise errors.invalid_argument((field, "an E.164 number, e.g. +14155550100"))


def preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_PREVIEW else text[:MAX_PREVIEW - 1] + "…"


_Action = admin_events.ModerationActionTaken
# (title, body before the reason) of a decision told to the person it affects, and of its reversal.
_DECISIONS: Mapping[int, tuple[tuple[str, str], tuple[str, str]]] = {
    _Action.ACTION_WARN: (("A warning from our moderators", "After a review, our moderators warn you"),
                          ("A warning was withdrawn", "A warning you were given was withdrawn")),
    # A hide reversed on a listing still held for review leaves it held (pet shows the state): not "visible".
    _Action.ACTION_HIDE_LISTING: (("Your listing was hidden", "After a review, one of your listings was hidden"),
                                  ("Your listing is no longer hidden", "The decision to hide your listing was "
                                   "reversed")),
    _Action.ACTION_HOLD_LISTING: (("Your listing is on hold", "One of your listings is held until a moderator "
                                   "reviews it"),
                                  ("Your listing is visible again", "Your listing is shown again")),
    _Action.ACTION_SUSPEND_USER: (("Your account is suspended", "After a review, your account is suspended"),
                                  ("Your account is reinstated", "Your account was reinstated")),
    _Action.ACTION_BAN_USER: (("Your account is banned", "After a review, your account is banned"),
                              ("Your account is reinstated", "Your account was reinstated")),
}
_STATUSES: Mapping[int, tuple[str, str]] = {
    auth_pb2.ACCOUNT_STATUS_SUSPENDED: ("Your account is suspended", "Your account is suspended"),
    auth_pb2.ACCOUNT_STATUS_BANNED: ("Your account is banned", "Your account is banned"),
    auth_pb2.ACCOUNT_STATUS_ACTIVE: ("Your account is reinstated", "Your account was reinstated"),
}


def moderation_notice(action: int, *, reversal: bool, reason: str) -> tuple[str, str] | None:
    """(title, body) telling the affected person of a moderation decision; None for a dismissal (or an
    unknown action): nobody is told. Only the decision and its reason: never who reported."""
    texts = _DECISIONS.get(action)
    if texts is None:
        return None
    title, body = texts[1 if reversal else 0]
    return title, _with_reason(body, reason)


def status_notice(status: int, *, reason: str, end_time: dt.datetime | None = None) -> tuple[str, str] | None:
    """(title, body) of a status change staff made; a suspension that ends by itself says when."""
    texts = _STATUSES.get(status)
    if texts is None:
        return None
    title, body = texts
    if end_time is not None and status == auth_pb2.ACCOUNT_STATUS_SUSPENDED:
        until = f" until {end_time:%Y-%m-%d %H:%M} UTC"
        title, body = title + until, body + until
    return title, _with_reason(body, reason)


def _with_reason(body: str, reason: str) -> str:
    reason = " ".join(reason.split())
    return f"{body}: {reason}" if reason else f"{body}."


def payout_failed_notice(payout: payment_pb2.Payment, retry: payment_pb2.Payment) -> tuple[str, str]:
    """(title, body) telling a business's owner a payout came back, and when it is paid again."""
    amount = f"{payout.amount.units}.{payout.amount.nanos // 10_000_000:02d} {payout.amount.currency_code}"
    reason = f" ({payout.failure_reason})" if payout.failure_reason else ""
    when = retry.due_time.ToDatetime() if retry.HasField("due_time") else None
    later = f" Otherwise we try the same account again on {when:%Y-%m-%d}." if when else ""
    return ("A payout could not reach your account",
            f"A payout of {amount} came back from your payout account{reason}. Update your payout account "
            f"and we pay it again at once.{later}")
