"""Chat's rules on values: pure functions, unit-tested without a server."""
from __future__ import annotations

import re
from collections.abc import Mapping

from mesh import errors
from mesh.resources import check_text, parse_name

MAX_TEXT = 4000
MAX_POSITIONS = 1000  # rooms a stream may resume at once
_ID = re.compile(r"^[0-9a-f]{32}$")


def room_id(name: str, field: str) -> str:
    return parse_name(name, "rooms/{}", field)[0]


def check_message(*, message_id: str, text: str, prefix: str = "") -> None:
    violations: list[tuple[str, str]] = []
    if not _ID.match(message_id):
        violations.append((f"{prefix}message_id", "must be 32 lowercase hex digits (a UUID without dashes)"))
    check_text(violations, f"{prefix}message.text", text, min_len=1, max_len=MAX_TEXT)
    if violations:
        raise errors.invalid_argument(*violations)


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
