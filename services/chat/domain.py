"""Chat's rules on values: pure functions, unit-tested without a server."""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from mesh import errors
from mesh.resources import check_text, parse_name
from petplatform.chat.v1 import chat_pb2

MAX_TEXT = 4000
MAX_ATTACHMENTS = 4  # per message
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_FILE_BYTES = 1024 * 1024  # PDF and text: short files
MAX_ATTACHMENT_BYTES = 6 * 1024 * 1024  # together, under the edge's 8 MiB request cap
MAX_FILENAME = 255
MAX_POSITIONS = 1000  # rooms a stream may resume at once
_ID = re.compile(r"^[0-9a-f]{32}$")


def room_id(name: str, field: str) -> str:
    return parse_name(name, "rooms/{}", field)[0]


def check_message(*, message_id: str, text: str, prefix: str = "",
                  attachments: Sequence[chat_pb2.AttachmentUpload] = ()) -> None:
    """Everything but the attachments' content (media.check_file, in a decoder thread)."""
    violations: list[tuple[str, str]] = []
    if not _ID.match(message_id):
        violations.append((f"{prefix}message_id", "must be 32 lowercase hex digits (a UUID without dashes)"))
    check_text(violations, f"{prefix}message.text", text, min_len=0 if attachments else 1, max_len=MAX_TEXT)
    if len(attachments) > MAX_ATTACHMENTS:
        violations.append((f"{prefix}attachments", f"at most {MAX_ATTACHMENTS}"))
    for i, a in enumerate(attachments):
        if not a.content:
            violations.append((f"{prefix}attachments[{i}].content", "required"))
        if not a.content_type:
            violations.append((f"{prefix}attachments[{i}].content_type", "required"))
        check_text(violations, f"{prefix}attachments[{i}].filename", a.filename, max_len=MAX_FILENAME)
    if violations:
        raise errors.invalid_argument(*violations)
    if sum(len(a.content) for a in attachments) > MAX_ATTACHMENT_BYTES:
        raise errors.invalid_argument((f"{prefix}attachments", f"at most {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MiB "
                                                               "together"), reason="ATTACHMENT_TOO_LARGE")


def positions(last_sequences: Mapping[str, int], field: str) -> dict[str, int]:
    """Room id -> last sequence seen, from a request's `rooms/{room}` -> sequence map."""
    if len(last_sequences) > MAX_POSITIONS:
        raise errors.invalid_argument((field, f"at most {MAX_POSITIONS} rooms"))
    out = {}
    for name, sequence in last_sequences.items():
        if sequence < 0:
            raise errors.invalid_argument((f"{field}[{name}]", "must not be negative"))
        out[room_id(name, f"{field}[{name}]")] = sequence
    return out


def delete_positions(last_delete_sequences: Mapping[str, int], field: str, rooms: Mapping[str, int]) -> dict[str, int]:
    """Room id -> the highest deletion number seen, for rooms the request also gives a position of."""
    out = {}
    for name, number in last_delete_sequences.items():
        room = room_id(name, f"{field}[{name}]")
        if number < 0:
            raise errors.invalid_argument((f"{field}[{name}]", "must not be negative"))
        if room not in rooms:
            raise errors.invalid_argument((f"{field}[{name}]", "only rooms with a last sequence"))
        out[room] = number
    return out
