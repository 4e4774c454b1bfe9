"""Two-factor authentication rules: TOTP (RFC 6238: SHA-1, six digits, 30-second steps, one step of clock
drift either way) and recovery codes (ten, single-use, only their hashes kept)."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import secrets

import pyotp
import segno

ISSUER = "Pet Platform"
STEP_SECONDS = 30
DRIFT_STEPS = 1
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes (0/o, 1/l/i)


def new_secret() -> str:
    return pyotp.random_base32()  # 160 bits, as RFC 4226 recommends


def otpauth_uri(secret: str, account_label: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account_label, issuer_name=ISSUER)


def qr_png(uri: str) -> bytes:
    buf = io.BytesIO()
    segno.make(uri, error="m").save(buf, kind="png", scale=5, border=4)
    return buf.getvalue()


def matching_step(secret: str, code: str, now: dt.datetime) -> int | None:
    """The time step whose code `code` is, within the allowed drift; None when it is none of them. The
    caller records the step, so that neither this code nor an older one is accepted again."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Ten codes of 10 characters (about 50 bits each), shown as xxxxx-xxxxx."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def recovery_code_hash(code: str) -> str:
    """What is stored of a recovery code: the SHA-256 of its characters, ignoring case, spaces and dashes.
    The codes are random, so a fast hash is enough: there is no dictionary to try."""
    return hashlib.sha256("".join(c for c in code.lower() if c.isalnum()).encode()).hexdigest()


def looks_like_totp(code: str) -> bool:
    code = "".join(code.split())
    return len(code) == 6 and code.isdigit()
