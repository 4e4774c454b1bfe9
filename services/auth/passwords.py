"""NIST SP 800-63B passwords: 8-128 characters, no composition rules, not a common password; bcrypt."""
from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import unicodedata

import bcrypt
from zxcvbn.frequency_lists import FREQUENCY_LISTS

MIN_LENGTH = 8
MAX_LENGTH = 128


@functools.cache
def _common() -> frozenset[str]:
    # 30,000 most common passwords from breach corpora, shipped with zxcvbn.
    return frozenset(FREQUENCY_LISTS["passwords"])


def normalise(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def problems(password: str, *, context: list[str]) -> str | None:
    """Why the password is refused, or None. `context`: words specific to this account (email, name)."""
    pw = normalise(password)
    if len(pw) < MIN_LENGTH:
        return f"must have at least {MIN_LENGTH} characters"
    if len(pw) > MAX_LENGTH:
        return f"must have at most {MAX_LENGTH} characters"
    lowered = pw.lower()
    if lowered in _common() or len(set(lowered)) == 1:
        return "is too common; choose a password that is not on lists of breached passwords"
    if any(w and lowered == w.lower() for w in context):
        return "must not be your email or name"
    return None


def _prehash(password: str) -> bytes:
    # bcrypt reads at most 72 bytes; a SHA-256 digest lets all 128 characters count.
    return base64.b64encode(hashlib.sha256(normalise(password).encode()).digest())


async def hash_password(password: str, rounds: int) -> str:
    salt = bcrypt.gensalt(rounds)
    return (await asyncio.to_thread(bcrypt.hashpw, _prehash(password), salt)).decode()


async def check_password(password: str, hashed: str) -> bool:
    return await asyncio.to_thread(bcrypt.checkpw, _prehash(password), hashed.encode())
