"""Webhook signatures as Stripe makes them (pure functions): the header `t=<unix time>,v1=<hex>`
where v1 is HMAC-SHA256 of "<t>.<raw body>" with the endpoint's secret. The local provider and its bank
page (gateway/dev_bank.py) sign the same way, so one verifier serves all. One URL may take events of two
Stripe endpoints (the account's own, and Connect's for connected accounts), each with its own secret:
either verifies."""
from __future__ import annotations

import hashlib
import hmac

TOLERANCE_SECONDS = 300


class BadSignature(ValueError):
    pass


def sign(payload: bytes, secret: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(payload: bytes, header: str, *secrets: bytes, now: float, tolerance: int = TOLERANCE_SECONDS) -> None:
    """BadSignature unless some v1 of the header signs `payload` with one of `secrets` and its t is
    within `tolerance` seconds of `now` (either way: a stale replay, or a clock far ahead)."""
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise BadSignature("malformed timestamp") from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise BadSignature("no timestamp or no v1 signature")
    expected = [hmac.new(secret, f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
                for secret in secrets]
    if not any(hmac.compare_digest(e, s) for e in expected for s in signatures):
        raise BadSignature("signature does not match")
    if abs(now - timestamp) > tolerance:
        raise BadSignature("timestamp outside the tolerance")
