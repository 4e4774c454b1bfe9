"""Sessions (list, revoke one or all others) and two-factor authentication, through the public gRPC API."""
from __future__ import annotations

import collections

import grpc
import jwt
import pyotp
import pytest

from petplatform.auth.v1 import auth_pb2
from tests.support.errors import expect
from tests.support.platform import PASSWORD, Api, Session, totp_code


def refresh(api: Api, token: str):
    return api.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=token))


def checked(api: Api, session: Session):
    """A call that needs a signed-in user whose session is not revoked."""
    return api.auth.ListSessions(auth_pb2.ListSessionsRequest(parent=session.name), metadata=session.md)


async def login(api: Api, email: str, *, agent: str = "", platform=auth_pb2.CLIENT_PLATFORM_UNSPECIFIED,
                ip: str = "198.51.100.7") -> Session:
    md = api.from_address(ip) + ((("x-user-agent", agent),) if agent else ())
    t = await api.auth.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD, platform=platform), metadata=md)
    return Session(jwt.decode(t.access_token, options={"verify_signature": False})["sub"], email, t.access_token,
                   t.refresh_token)


def sid(session: Session) -> str:
    return jwt.decode(session.access_token, options={"verify_signature": False})["sid"]


async def test_every_sign_in_is_a_session_with_its_device(api: Api):
    s = await api.signup()
    phone = await login(api, s.email, agent="PetApp/2.1 (iPhone; iOS 18)", platform=auth_pb2.CLIENT_PLATFORM_IOS,
                        ip="203.0.113.5")
    listed = (await checked(api, phone)).sessions
    assert len(listed) == 2 and listed[0].name == f"{s.name}/sessions/{sid(phone)}"  # newest first
    mine = listed[0]
    assert (mine.user_agent, mine.platform, mine.client_address, mine.sign_in_method, mine.current) == (
        "PetApp/2.1 (iPhone; iOS 18)", auth_pb2.CLIENT_PLATFORM_IOS, "203.0.113.5", "password", True)
    assert mine.create_time.seconds and mine.last_use_time.seconds >= mine.create_time.seconds
    assert not listed[1].current and listed[1].name == f"{s.name}/sessions/{sid(s)}"
    # A refresh keeps the session (and its id in the new access tokens).
    rotated = await refresh(api, phone.refresh_token)
    assert jwt.decode(rotated.access_token, options={"verify_signature": False})["sid"] == sid(phone)
    assert len((await checked(api, phone)).sessions) == 2


async def test_revoking_a_session_stops_its_refresh_and_access_tokens_at_once(api: Api):
    s = await api.signup()
    laptop = await login(api, s.email, agent="Firefox")
    answer = await api.auth.RevokeSession(auth_pb2.RevokeSessionRequest(name=f"{s.name}/sessions/{sid(laptop)}"),
                                          metadata=s.md)
    assert answer.revoked_count == 1
    await expect(grpc.StatusCode.UNAUTHENTICATED, refresh(api, laptop.refresh_token), "REFRESH_TOKEN_INVALID")
    await expect(grpc.StatusCode.UNAUTHENTICATED, checked(api, laptop), "SESSION_REVOKED")
    assert [x.name for x in (await checked(api, s)).sessions] == [f"{s.name}/sessions/{sid(s)}"]
    # Revoking it again ends nothing more.
    again = await api.auth.RevokeSession(auth_pb2.RevokeSessionRequest(name=f"{s.name}/sessions/{sid(laptop)}"),
                                         metadata=s.md)
    assert again.revoked_count == 0


async def test_revoke_all_other_sessions(api: Api):
    s = await api.signup()
    others = [await login(api, s.email, agent=f"Device {i}") for i in range(3)]
    answer = await api.auth.RevokeSession(auth_pb2.RevokeSessionRequest(name=f"{s.name}/sessions/-"), metadata=s.md)
    assert answer.revoked_count == 3
    for o in others:
        await expect(grpc.StatusCode.UNAUTHENTICATED, refresh(api, o.refresh_token))
        await expect(grpc.StatusCode.UNAUTHENTICATED, checked(api, o), "SESSION_REVOKED")
    await refresh(api, s.refresh_token)  # the caller's own goes on


async def test_other_peoples_sessions_are_out_of_reach(api: Api):
    me, them = await api.signup(), await api.signup()
    await expect(grpc.StatusCode.PERMISSION_DENIED,
                 api.auth.ListSessions(auth_pb2.ListSessionsRequest(parent=them.name), metadata=me.md))
    for name in (f"{them.name}/sessions/{sid(them)}", f"{them.name}/sessions/-"):
        await expect(grpc.StatusCode.PERMISSION_DENIED,
                     api.auth.RevokeSession(auth_pb2.RevokeSessionRequest(name=name), metadata=me.md))
    # Their session id under my name is no session of mine.
    await expect(grpc.StatusCode.NOT_FOUND, api.auth.RevokeSession(
        auth_pb2.RevokeSessionRequest(name=f"{me.name}/sessions/{sid(them)}"), metadata=me.md))
    await refresh(api, them.refresh_token)
    for bad in ("users/x/sessions/y", "sessions/1", f"{me.name}/sessions/", f"{me.name}/session/{sid(me)}"):
        await expect(grpc.StatusCode.INVALID_ARGUMENT,
                     api.auth.RevokeSession(auth_pb2.RevokeSessionRequest(name=bad), metadata=me.md))
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.ListSessions(auth_pb2.ListSessionsRequest(parent=me.name)))


def listed(api: Api, who: Session, parent: str, **paging):
    return api.auth.ListSessions(auth_pb2.ListSessionsRequest(parent=parent, **paging), metadata=who.md)


async def test_sessions_come_in_pages_and_page_tokens_cannot_be_forged(api: Api):
    s = await api.signup()
    devices = [await login(api, s.email, agent=f"Device {i}") for i in range(7)]
    pages, token = [], ""
    while True:
        answer = await listed(api, s, s.name, page_size=3, page_token=token)
        pages.append([x.name for x in answer.sessions])
        token = answer.next_page_token
        if not token:
            break
        if len(pages) == 1:  # a sign-in meanwhile goes to the front: the pages after it do not shift
            await login(api, s.email, agent="Meanwhile")
    names = [n for p in pages for n in p]
    assert [len(p) for p in pages] == [3, 3, 2]
    assert names == [f"{s.name}/sessions/{sid(d)}" for d in reversed([s, *devices])]  # newest first, once each
    everything = (await listed(api, s, s.name)).sessions  # default page size 20: all nine on one page
    assert len(everything) == 9 and not (await listed(api, s, s.name)).next_page_token
    # Tokens: only this service's, only for this listing.
    token = (await listed(api, s, s.name, page_size=2)).next_page_token
    assert token and (await listed(api, s, s.name, page_size=5, page_token=token)).sessions  # size may change
    payload, _ = token.split(".")
    them = await api.signup()
    for forged in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), f"{payload}.", "garbage", "a.b.c",
                   "x" * 5000):
        await expect(grpc.StatusCode.INVALID_ARGUMENT, listed(api, s, s.name, page_token=forged))
    # Another account's listing does not take my token (nor I theirs).
    await expect(grpc.StatusCode.INVALID_ARGUMENT, listed(api, them, them.name, page_token=token))
    await expect(grpc.StatusCode.INVALID_ARGUMENT, listed(api, s, s.name, page_size=-1))


async def test_a_sign_in_from_a_new_device_is_told_by_email(api: Api):
    s = await api.signup()
    await login(api, s.email, agent="Strange Browser/1.0")
    mail = await api.smtp.wait_for_subject(s.email, "New sign-in to your Pet Platform account")
    assert "Strange Browser/1.0" in mail.get_body(("plain",)).get_content()


async def test_enrolment_then_password_and_code(api: Api):
    s = await api.signup()
    start = await api.auth.StartMfaEnrollment(auth_pb2.StartMfaEnrollmentRequest(), metadata=s.md)
    assert start.otpauth_uri.startswith("otpauth://totp/") and f"secret={start.secret}" in start.otpauth_uri
    assert start.qr_code_png.startswith(b"\x89PNG")
    # Not on before it is confirmed: the password alone still signs in.
    assert (await api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))).access_token
    await expect(grpc.StatusCode.PERMISSION_DENIED, api.auth.ConfirmMfaEnrollment(
        auth_pb2.ConfirmMfaEnrollmentRequest(code="000000"), metadata=s.md), "MFA_CODE_INVALID")
    codes = (await api.auth.ConfirmMfaEnrollment(auth_pb2.ConfirmMfaEnrollmentRequest(
        code=pyotp.TOTP(start.secret).now()), metadata=s.md)).recovery_codes
    assert len(codes) == 10 and len(set(codes)) == 10
    await api.smtp.wait_for_subject(s.email, "Two-factor authentication is on")
    first = await api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))
    assert first.mfa_challenge and not first.access_token and not first.refresh_token
    code = totp_code(start.secret, ahead=1)
    done = await api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(mfa_challenge=first.mfa_challenge, code=code))
    claims = jwt.decode(done.access_token, options={"verify_signature": False})
    assert claims["amr"] == ["pwd", "otp", "mfa"] and done.refresh_token
    # The code is spent: a replay, even with a fresh password sign-in, is refused; so is the spent challenge.
    again = await api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(
        mfa_challenge=again.mfa_challenge, code=code)), "MFA_CODE_USED")
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(
        mfa_challenge=first.mfa_challenge, code=totp_code(start.secret, ahead=-1))), "MFA_CHALLENGE_INVALID")
    # The session remembers its second factor across refreshes.
    rotated = await refresh(api, done.refresh_token)
    assert "mfa" in jwt.decode(rotated.access_token, options={"verify_signature": False})["amr"]


async def test_a_recovery_code_works_once(api: Api):
    s = await api.signup()
    _, codes = await api.enroll_mfa(s)
    first = await api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))
    done = await api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(mfa_challenge=first.mfa_challenge,
                                                              code=codes[0].upper().replace("-", " ")))
    assert done.access_token and done.recovery_code_used and done.recovery_codes_left == 9
    again = await api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(
        mfa_challenge=again.mfa_challenge, code=codes[0])), "MFA_CODE_INVALID")
    assert (await api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(mfa_challenge=again.mfa_challenge,
                                                               code=codes[1]))).recovery_codes_left == 8


async def test_regenerated_recovery_codes_replace_the_old_ones(api: Api):
    s = await api.signup()
    secret, old = await api.enroll_mfa(s)
    new = (await api.auth.RegenerateRecoveryCodes(auth_pb2.RegenerateRecoveryCodesRequest(
        code=totp_code(secret, ahead=1)), metadata=s.md)).recovery_codes
    assert len(new) == 10 and not set(new) & set(old)
    first = await api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(
        mfa_challenge=first.mfa_challenge, code=old[0])), "MFA_CODE_INVALID")
    await api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(mfa_challenge=first.mfa_challenge, code=new[0]))


async def test_wrong_codes_are_throttled_like_passwords(api: Api):
    s = await api.signup()
    await api.enroll_mfa(s)
    first = await api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))
    outcomes = collections.Counter()
    for _ in range(8):
        try:
            await api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(mfa_challenge=first.mfa_challenge, code="123456"),
                                     metadata=api.from_address("203.0.113.77"))
        except grpc.aio.AioRpcError as e:
            outcomes[e.code()] += 1
    assert outcomes[grpc.StatusCode.RESOURCE_EXHAUSTED] >= 3 and outcomes[grpc.StatusCode.UNAUTHENTICATED] <= 5


async def test_disabling_needs_the_password_and_a_current_code(api: Api):
    s = await api.signup()
    secret, _ = await api.enroll_mfa(s)
    code = totp_code(secret, ahead=1)
    await expect(grpc.StatusCode.PERMISSION_DENIED, api.auth.DisableMfa(
        auth_pb2.DisableMfaRequest(password="not the password", code=code), metadata=s.md), "INVALID_CREDENTIALS")
    await expect(grpc.StatusCode.PERMISSION_DENIED, api.auth.DisableMfa(
        auth_pb2.DisableMfaRequest(password=PASSWORD, code="000000"), metadata=s.md), "MFA_CODE_INVALID")
    await api.auth.DisableMfa(auth_pb2.DisableMfaRequest(password=PASSWORD, code=code), metadata=s.md)
    await api.smtp.wait_for_subject(s.email, "Two-factor authentication is off")
    assert (await api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))).access_token
    await expect(grpc.StatusCode.FAILED_PRECONDITION, api.auth.DisableMfa(
        auth_pb2.DisableMfaRequest(password=PASSWORD, code=code), metadata=s.md), "MFA_NOT_ENABLED")


async def test_mfa_bad_input(api: Api):
    s = await api.signup()
    await expect(grpc.StatusCode.FAILED_PRECONDITION, api.auth.ConfirmMfaEnrollment(
        auth_pb2.ConfirmMfaEnrollmentRequest(code="123456"), metadata=s.md), "MFA_NOT_STARTED")
    await expect(grpc.StatusCode.INVALID_ARGUMENT, api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest()), "MISSING_FIELD")
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(
        mfa_challenge="made-up", code="123456")), "MFA_CHALLENGE_INVALID")
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.StartMfaEnrollment(auth_pb2.StartMfaEnrollmentRequest()))
    await api.enroll_mfa(s)
    await expect(grpc.StatusCode.FAILED_PRECONDITION, api.auth.StartMfaEnrollment(
        auth_pb2.StartMfaEnrollmentRequest(), metadata=s.md), "MFA_ALREADY_ENABLED")


@pytest.mark.real
async def test_sessions_and_mfa_on_the_real_profile(real_api: Api):
    """PostgreSQL for sessions, factors and the code's step (compare-and-set), Redis for challenges and the
    revocation list."""
    s = await real_api.signup()
    other = await login(real_api, s.email, agent="Other device")
    await real_api.auth.RevokeSession(auth_pb2.RevokeSessionRequest(name=f"{s.name}/sessions/-"), metadata=s.md)
    await expect(grpc.StatusCode.UNAUTHENTICATED, refresh(real_api, other.refresh_token))
    await expect(grpc.StatusCode.UNAUTHENTICATED, checked(real_api, other), "SESSION_REVOKED")
    secret, codes = await real_api.enroll_mfa(s)
    first = await real_api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))
    code = totp_code(secret, ahead=1)
    await real_api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(mfa_challenge=first.mfa_challenge, code=code))
    again = await real_api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))
    await expect(grpc.StatusCode.UNAUTHENTICATED, real_api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(
        mfa_challenge=again.mfa_challenge, code=code)), "MFA_CODE_USED")
    await real_api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(mfa_challenge=again.mfa_challenge, code=codes[0]))
