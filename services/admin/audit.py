"""The audit log: appended in the transaction of what it records, hash-chained, never edited.

Each entry's hash is SHA-256 of the previous entry's hash (32 zero bytes before the first) and the
entry's canonical bytes (a JSON array of its fields in a fixed order), so changing an entry changes
its hash and breaks every link after it; removing one leaves a gap in the sequence, and removing the
newest ones leaves the log short of the head row. Appends take the head row's lock, so they take
turns and the chain never forks.

What this does not stop: someone with write access to the database who rewrites the entries, the
chain after them and the head together. Anchoring the head outside the database (publishing it, or
keying the hashes with a secret the database never holds) would; not done here."""
from __future__ import annotations

from dataclasses import dataclass
import datetime as dt
import hashlib
import json

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.sql import Row
from services.admin import store

GENESIS = "0" * 64
BATCH = 1000


def canonical(*, sequence: int, kind: int, actor: str, action: str, target: str, detail: str,
              create_time: dt.datetime) -> bytes:
    when = create_time.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps([sequence, kind, actor, action, target, detail, when], ensure_ascii=False,
                      separators=(",", ":")).encode()


def chain(previous: str, entry: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(previous) + entry).hexdigest()


async def append(s: AsyncSession, *, kind: int, actor: str, action: str, target: str = "", detail: str = "",
                 now: dt.datetime) -> int:
    """Appends an entry in the session's transaction; its sequence number."""
    head = await store.lock_audit_head(s)
    sequence = head.sequence + 1
    entry = canonical(sequence=sequence, kind=kind, actor=actor, action=action, target=target, detail=detail,
                      create_time=now)
    await store.append_audit_row(s, head_sequence=head.sequence, sequence=sequence, kind=kind, actor=actor,
                                 action=action, target=target, detail=detail, create_time=now,
                                 hash=chain(head.hash, entry))
    return sequence


def _entry_bytes(r: Row) -> bytes:
    return canonical(sequence=r.sequence, kind=r.kind, actor=r.actor, action=r.action, target=r.target,
                     detail=r.detail, create_time=r.create_time)


@dataclass(frozen=True)
class Verdict:
    intact: bool
    checked: int
    first_bad: int | None = None
    problem: str = ""


async def verify(s: AsyncSession) -> Verdict:
    """Walks the chain from the first entry (in one read snapshot)."""
    previous, expected, checked = GENESIS, 1, 0
    while True:
        rows = await store.audit_batch(s, after=expected - 1, size=BATCH)
        for r in rows:
            if r.sequence != expected:
                return Verdict(False, checked, r.sequence,
                               f"entries {expected} to {r.sequence - 1} are missing")
            if chain(previous, _entry_bytes(r)) != r.hash:
                return Verdict(False, checked, r.sequence, "the entry or its hash was changed")
            previous, expected, checked = r.hash, expected + 1, checked + 1
        if len(rows) < BATCH:
            break
    head = await store.audit_head_row(s)
    if head.sequence != expected - 1 or head.hash != previous:
        return Verdict(False, checked, expected,
                       f"the log ends at entry {expected - 1} but {head.sequence} were appended")
    return Verdict(True, checked)
