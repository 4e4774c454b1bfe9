"""Auth rules that need no database: email addresses and sign-up fields, roles, what is stored of a token,
access token claims, and when a refresh or verification token may be used."""
from __future__ import annotations

from collections.abc import Collection
import datetime as dt
import hashlib
import re
from typing import Any
import unicodedata
import uuid

from mesh import errors
from mesh.resources import check_display_name, has_hidden_characters
from petplatform.auth.v1 import auth_pb2
from services.auth import passwords

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
MAX_EMAIL_LENGTH = 254
# Stored role -> the Account message's (the token's `role` claim is the stored one: mesh.principal.ROLE_*).
ROLES = {"user": auth_pb2.ROLE_USER, "admin": auth_pb2.ROLE_ADMIN, "moderator": auth_pb2.ROLE_MODERATOR,
         "support": auth_pb2.ROLE_SUPPORT}
ROLE_NAMES = {v: k for k, v in ROLES.items()}
STAFF_ROLES = frozenset({"admin", "moderator", "support"})
# Stored status -> the Account message's.
STATUSES = {"active": auth_pb2.ACCOUNT_STATUS_ACTIVE, "suspended": auth_pb2.ACCOUNT_STATUS_SUSPENDED,
            "banned": auth_pb2.ACCOUNT_STATUS_BANNED}
STATUS_NAMES = {v: k for k, v in STATUSES.items()}
MAX_STATUS_REASON = 500
# Emails a caller may have sent in an hour: verification links they ask for, and the notice to the owner of
# an email someone tried to register again (so Register cannot flood a mailbox).
MAX_VERIFICATION_EMAILS_PER_HOUR = 5
MAX_SIGNUP_NOTICES_PER_HOUR = 1


def normalise_email(raw: str) -> str:
    """The one form of an email address that is stored, compared and throttled: NFKC (full-width and other
    compatibility characters become plain ones), without surrounding spaces, lower case."""
    return unicodedata.normalize("NFKC", raw).strip().lower()


def check_registration(email: str, display_name: str, password: str) -> None:
    """Raises INVALID_ARGUMENT naming every bad field of a sign-up (`email` normalised, `display_name`
    stripped). The password may not be the email, its local part or the name."""
    violations: list = []
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        violations.append(("email", "must be a valid email address"))
    elif has_hidden_characters(email):  # "a\u200b@x.com" would be an account that reads as a@x.com
        violations.append(("email", "must not contain invisible or control characters"))
    check_display_name(violations, "display_name", display_name)
    why = passwords.problems(password, context=[email, email.split("@")[0], display_name])
    if why:
        violations.append(("password", why))
    if violations:
        raise errors.invalid_argument(*violations)


def role_for(email: str, admin_emails: Collection[str]) -> str:
    """The role of a new account: admin when its (normalised) email is one of the configured admins'."""
    return "admin" if email in admin_emails else "user"


def sha256(text: str) -> str:
    """Hex SHA-256: all that is stored of a refresh or verification token, and how an email appears in a
    cache key."""
    return hashlib.sha256(text.encode()).hexdigest()


def access_claims(*, issuer: str, account_id: str, role: str, session_id: str, amr: list[str], now: dt.datetime,
                  ttl_seconds: int) -> dict[str, Any]:
    """The claims of an access token: its session is the refresh token family it was issued with (revoking
    that family ends it), `amr` how that session signed in (RFC 8176; `mfa` once a second factor passed: what
    an admin needs to act as one), and each token has its own id."""
    return {"iss": issuer, "sub": account_id, "sid": session_id, "role": role, "amr": amr, "iat": now,
            "exp": now + dt.timedelta(seconds=ttl_seconds), "jti": uuid.uuid4().hex}


def refresh_token_usable(*, revoke_time: dt.datetime | None, expire_time: dt.datetime, now: dt.datetime) -> bool:
    """Whether a stored refresh token may still be exchanged: neither revoked nor expired. One already used
    may not be either, but that is reuse, which the caller tells apart."""
    return revoke_time is None and expire_time > now


def verification_link_used() -> errors.ApiError:
    return errors.failed_precondition("this verification link was already used", "VERIFICATION_TOKEN_USED")


def check_verification_token(*, use_time: dt.datetime | None, expire_time: dt.datetime, now: dt.datetime) -> None:
    """Raises FAILED_PRECONDITION when a stored verification token was used or has expired."""
    if use_time is not None:
        raise verification_link_used()
    if expire_time <= now:
        raise errors.failed_precondition("this verification link has expired; ask for a new one",
                                         "VERIFICATION_TOKEN_EXPIRED")


def sign_in_refused(status: str) -> errors.ApiError | None:
    """Why an account of this status may not sign in or refresh its tokens; None when it may. Told only to
    whoever proved they hold the account (a right password, a valid token): no one else learns its status."""
    if status == "suspended":
        return errors.permission_denied("this account is suspended", "ACCOUNT_SUSPENDED")
    if status == "banned":
        return errors.permission_denied("this account is banned", "ACCOUNT_BANNED")
    return None


def check_status_reason(reason: str) -> str:
    """The reason of a status change, stripped: 1 to MAX_STATUS_REASON characters, no hidden characters."""
    reason = reason.strip()
    if not reason:
        raise errors.invalid_argument(("reason", "required: it is shown to the account's owner"))
    if len(reason) > MAX_STATUS_REASON:
        raise errors.invalid_argument(("reason", f"at most {MAX_STATUS_REASON} characters"))
    if has_hidden_characters(reason):
        raise errors.invalid_argument(("reason", "must not contain invisible or control characters"))
    return reason
