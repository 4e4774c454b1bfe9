"""Auth rules as pure functions: the one form of an email address, sign-up fields, roles, token claims and
lifetimes."""
from __future__ import annotations

import datetime as dt
import types

import grpc
from hypothesis import given, strategies as st
import pyotp
import pytest

from mesh import errors, principal
from petplatform.auth.v1 import auth_pb2
from services.auth import domain, mfa

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.timezone.utc)
PASSWORD = "correct horse battery staple"


@pytest.mark.parametrize("typed", [
    "me@example.com",
    "Me@Example.COM",  # case
    "  me@example.com\t\n",  # surrounding white space
    "\u3000me@example.com\u3000",  # ideographic spaces: NFKC makes them plain ones, then stripped
    "ｍｅ＠ｅｘａｍｐｌｅ．ｃｏｍ",  # full-width forms
    "ＭＥ＠ＥＸＡＭＰＬＥ．ＣＯＭ",  # full-width capitals
    "ME@example.com",
])
def test_forms_of_one_address_normalise_alike(typed):
    assert domain.normalise_email(typed) == "me@example.com"


@pytest.mark.parametrize("typed, normal", [
    ("Jos\u0065\u0301@example.com", "jos\u00e9@example.com"),  # decomposed é composes
    ("JOS\u00c9@example.com", "jos\u00e9@example.com"),
    ("\ufb01sh@example.com", "fish@example.com"),  # the ﬁ ligature
    ("\u212aelvin@example.com", "kelvin@example.com"),  # KELVIN SIGN is a K
    ("STRASSE@example.de", "strasse@example.de"),
    ("STRAẞE@example.de", "straße@example.de"),  # lower case, not case folding: ß stays ß
])
def test_compatibility_and_case_forms(typed, normal):
    assert domain.normalise_email(typed) == normal


@given(st.text(max_size=40))
def test_normalising_twice_changes_nothing(raw):
    # An address is stored normalised: typing exactly what was stored must find it again.
    once = domain.normalise_email(raw)
    assert domain.normalise_email(once) == once


def violations_of(email: str, display_name: str = "Me", password: str = PASSWORD) -> dict[str, str]:
    try:
        domain.check_registration(email, display_name, password)
    except errors.ApiError as e:
        return {v.field: v.description for v in e.details[0].field_violations}
    return {}


@pytest.mark.parametrize("email, valid", [
    ("me@example.com", True),
    ("a@b.co", True),
    ("first.last+tag@sub.example.org", True),
    ("me@example", False),  # no dot in the domain
    ("me@example.", False),
    ("@example.com", False),
    ("me@@example.com", False),
    ("me @example.com", False),
    ("", False),
    ("x" * 242 + "@example.com", True),  # 254 characters
    ("x" * 243 + "@example.com", False),
    ("m\u200be@example.com", False),  # zero-width space: would read as me@example.com
    ("me@exa\u202emple.com", False),  # right-to-left override
    ("me\u00ad@example.com", False),  # soft hyphen
    ("m\u00e9@example.com", True),  # an accented letter is a letter
])
def test_email_addresses(email, valid):
    assert ("email" not in violations_of(email)) == valid


def test_every_bad_sign_up_field_is_named_at_once():
    assert set(violations_of("nope", display_name="", password="short")) == {"email", "display_name", "password"}


def test_the_password_may_not_be_the_email_or_the_name():
    same = "must not be your email or name"
    assert violations_of("alice.wonder@example.com", password="alice.wonder")["password"] == same
    assert violations_of("aw@example.com", password="aw@example.com")["password"] == same
    assert violations_of("aw@example.com", "Alice Wonderland", "alice wonderland")["password"] == same
    assert violations_of("aw@example.com", "Alice Wonderland", PASSWORD) == {}


def test_admins_by_email_and_roles_in_messages():
    admins = {domain.normalise_email("Boss@Example.com")}
    assert domain.role_for("boss@example.com", admins) == "admin"
    assert domain.role_for("staff@example.com", admins) == "user"
    assert domain.ROLES == {"user": auth_pb2.ROLE_USER, "admin": auth_pb2.ROLE_ADMIN,
                            "moderator": auth_pb2.ROLE_MODERATOR, "support": auth_pb2.ROLE_SUPPORT}
    # The stored names are the token's role claim, which the mesh's staff access levels read.
    assert domain.STAFF_ROLES == {principal.ROLE_ADMIN, principal.ROLE_MODERATOR, principal.ROLE_SUPPORT}


def test_a_status_change_needs_a_plain_reason():
    assert domain.check_status_reason("  fake puppy ads ") == "fake puppy ads"
    for bad in ("", "   ", "x" * 501, "a\u202eb"):
        with pytest.raises(errors.ApiError) as e:
            domain.check_status_reason(bad)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_tokens_are_stored_as_their_sha256():
    assert domain.sha256("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_access_claims():
    claims = domain.access_claims(issuer="petplatform", account_id="a1", role="user", session_id="f1", amr=["pwd"],
                                  now=NOW, ttl_seconds=900)
    assert {k: v for k, v in claims.items() if k != "jti"} == {
        "iss": "petplatform", "sub": "a1", "sid": "f1", "role": "user", "amr": ["pwd"], "iat": NOW,
        "exp": NOW + dt.timedelta(minutes=15)}
    again = domain.access_claims(issuer="petplatform", account_id="a1", role="user", session_id="f1", amr=["pwd"],
                                 now=NOW, ttl_seconds=900)
    assert len(claims["jti"]) == 32 and claims["jti"] != again["jti"]


@pytest.mark.parametrize("revoked, expires_in, usable", [
    (False, dt.timedelta(seconds=1), True),
    (False, dt.timedelta(0), False),  # expires at this instant
    (False, -dt.timedelta(days=1), False),
    (True, dt.timedelta(days=7), False),
])
def test_refresh_token_lifetime(revoked, expires_in, usable):
    assert domain.refresh_token_usable(revoke_time=NOW if revoked else None, expire_time=NOW + expires_in,
                                       now=NOW) == usable


def test_verification_tokens_are_used_once_before_they_expire():
    domain.check_verification_token(use_time=None, expire_time=NOW + dt.timedelta(seconds=1), now=NOW)
    with pytest.raises(errors.ApiError) as used:
        domain.check_verification_token(use_time=NOW, expire_time=NOW + dt.timedelta(days=1), now=NOW)
    assert used.value.reason == "VERIFICATION_TOKEN_USED"
    with pytest.raises(errors.ApiError) as expired:
        domain.check_verification_token(use_time=None, expire_time=NOW, now=NOW)
    assert expired.value.reason == "VERIFICATION_TOKEN_EXPIRED"
    with pytest.raises(errors.ApiError) as both:  # a used link says so, even once expired
        domain.check_verification_token(use_time=NOW, expire_time=NOW - dt.timedelta(days=1), now=NOW)
    assert both.value.reason == "VERIFICATION_TOKEN_USED"


def test_totp_codes_match_their_step_within_one_step_of_drift():
    secret = mfa.new_secret()
    totp = pyotp.TOTP(secret)
    step = int(NOW.timestamp()) // 30
    for offset in (-1, 0, 1):
        assert mfa.matching_step(secret, totp.at(NOW + dt.timedelta(seconds=30 * offset)), NOW) == step + offset
    for offset in (-2, 2):
        assert mfa.matching_step(secret, totp.at(NOW + dt.timedelta(seconds=30 * offset)), NOW) is None
    assert mfa.matching_step(secret, "12345", NOW) is None and mfa.matching_step(secret, "abcdef", NOW) is None
    spaced = totp.at(NOW)
    assert mfa.matching_step(secret, f"{spaced[:3]} {spaced[3:]}", NOW) == step


def test_recovery_codes_are_random_and_compared_loosely():
    codes = mfa.new_recovery_codes()
    assert len(set(codes)) == 10 and all(len(c) == 11 and c[5] == "-" for c in codes)
    assert mfa.recovery_code_hash(codes[0]) == mfa.recovery_code_hash(codes[0].upper().replace("-", " "))
    assert mfa.recovery_code_hash(codes[0]) != mfa.recovery_code_hash(codes[1])


def test_a_suspension_with_an_end_stops_counting_at_its_end():
    now = dt.datetime(2026, 11, 26, 12, tzinfo=dt.timezone.utc)

    def account(status, end=None):
        return types.SimpleNamespace(status=status, status_end_time=end)
    assert domain.sign_in_refused(account("suspended", now + dt.timedelta(seconds=1)), now).reason == \
        "ACCOUNT_SUSPENDED"
    assert domain.sign_in_refused(account("suspended", now), now) is None  # at the end it is over
    assert domain.suspension_lapsed(account("suspended", now), now)
    assert domain.sign_in_refused(account("suspended"), now).reason == "ACCOUNT_SUSPENDED"  # no end: until lifted
    assert not domain.suspension_lapsed(account("suspended"), now)
    assert domain.sign_in_refused(account("banned", now), now).reason == "ACCOUNT_BANNED"  # a ban has no end
    assert domain.sign_in_refused(account("active"), now) is None
    assert domain.check_suspension_end(None, status="banned", now=now) is None
    assert domain.check_suspension_end(now + dt.timedelta(days=1), status="suspended", now=now)
    for end, status in ((now, "suspended"), (now + dt.timedelta(days=3654), "suspended"),
                        (now + dt.timedelta(days=1), "banned"), (now + dt.timedelta(days=1), "active")):
        with pytest.raises(errors.ApiError):
            domain.check_suspension_end(end, status=status, now=now)
