"""Notification rules on values: pure functions, unit-tested without a server."""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

from mesh import errors
from petplatform.notification.v1 import notification_pb2 as pb

KINDS = [k for k in pb.Kind.values() if k != pb.KIND_UNSPECIFIED]
CHANNELS = [c for c in pb.Channel.values() if c != pb.CHANNEL_UNSPECIFIED]
# Until a person chooses: chat messages push only (they come often), the rest also by email; the
# welcome stays in the inbox (auth's verification email already greets them). SMS only when chosen.
DEFAULT_CHANNELS: Mapping[int, tuple[int, ...]] = {
    pb.KIND_MESSAGE: (pb.CHANNEL_PUSH,),
    pb.KIND_MATCH: (pb.CHANNEL_PUSH, pb.CHANNEL_EMAIL),
    pb.KIND_ADOPTION: (pb.CHANNEL_PUSH, pb.CHANNEL_EMAIL),
    pb.KIND_WELCOME: (),
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
