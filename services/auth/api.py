"""AuthService: accounts, login with throttling, sessions and rotating refresh tokens, email verification,
two-factor authentication, sign-in with identity providers, JWKS."""
from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import types
from collections.abc import Mapping
from typing import Any, cast

import grpc
import jwt
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import client_address, errors, pagination, principal
from mesh.cache import Cache
from mesh.revocation import Revocations
from mesh.config import Settings
from mesh.events import emit
from mesh.resources import check_display_name, decode_page_token, new_id, page_size, parse_name, timestamp
from mesh.sql import Database, Row, utcnow
from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc
from petplatform.auth.v1 import events_pb2 as auth_events
from petplatform.common.v1 import access_pb2, event_pb2
from services.auth import domain, mfa, moderation, passwords, store
from services.auth.keys import SigningKeys
from services.auth.providers import Identity, Provider, Providers
from services.auth.secret_box import SecretBox, SecretUnreadable
from services.auth.throttle import LoginThrottle


PLATFORM_NAMES: dict[int, str] = {auth_pb2.CLIENT_PLATFORM_WEB: "web", auth_pb2.CLIENT_PLATFORM_IOS: "ios",
                  auth_pb2.CLIENT_PLATFORM_ANDROID: "android"}
PLATFORMS: dict[str, int] = {v: k for k, v in PLATFORM_NAMES.items()}
MAX_USER_AGENT = 256
SecurityKind = auth_events.SecurityEventRecorded.Kind
log = logging.getLogger(__name__)


def account_message(row: Row | types.SimpleNamespace) -> auth_pb2.Account:
    return auth_pb2.Account(name=f"users/{row.id}", email=row.email or "", display_name=row.display_name,
                            email_verified=row.email_verified, role=domain.ROLES[row.role],
                            create_time=timestamp(row.create_time),
                            status=domain.STATUSES[row.status], status_reason=row.status_reason,
                            status_end_time=timestamp(row.status_end_time))


async def new_verification_email(session: AsyncSession, settings: Settings, account_id: str, email_addr: str) -> None:
    """Stores a single-use verification token and queues the email carrying it (email.send)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    await store.add_verification_token(
        session, token_hash=domain.sha256(token), account_id=account_id, create_time=now,
        expire_time=now + dt.timedelta(seconds=settings.verification_token_ttl_seconds))
    hours = settings.verification_token_ttl_seconds // 3600
    await emit(session, event_pb2.EmailRequested(
        to=email_addr, subject="Verify your Pet Platform email",
        text_body=(f"Welcome to Pet Platform!\n\nConfirm your email address within {hours} hours:\n"
                   f"{settings.public_url}/verify-email?token={token}\n\n"
                   "If you did not sign up, ignore this message.\n")))


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, db: Database, cache: Cache, revocations: Revocations, settings: Settings, keys: SigningKeys,
                 providers: Providers, secret_box: SecretBox):
        self.db = db
        self.revocations = revocations
        self.secret_box = secret_box
        self.cache = cache
        self.s = settings
        self.keys = keys
        self.providers = providers
        self.throttle = LoginThrottle(cache, settings)
        self._admins = {domain.normalise_email(e) for e in settings.admin_emails}
        self._dummy_hash: str | None = None

    async def Register(self, request: auth_pb2.RegisterRequest,
                       context: grpc.aio.ServicerContext) -> auth_pb2.RegisterResponse:
        email_addr = domain.normalise_email(request.email)
        display_name = request.display_name.strip()
        domain.check_registration(email_addr, display_name, request.password)
        # Hashed before anyone knows whether the email is taken: both answers take the same time.
        password_hash = await passwords.hash_password(request.password, self.s.bcrypt_rounds)
        account = types.SimpleNamespace(id=new_id(), email=email_addr, display_name=display_name,
                                        role=domain.role_for(email_addr, self._admins), email_verified=False,
                                        create_time=utcnow(), status="active", status_reason="",
                                        status_end_time=None)
        try:
            async with self.db.transaction() as s:
                await store.add_account(s, account_id=account.id, email=email_addr, password_hash=password_hash,
                                        display_name=display_name, role=account.role,
                                        create_time=account.create_time)
                await emit(s, auth_events.UserCreated(
                    user=f"users/{account.id}", email=email_addr, display_name=display_name))
        except IntegrityError:
            # The email has an account. Saying so would tell anyone which emails have accounts, so the
            # caller gets the answer a new account gets (its id is never stored) and the owner an email.
            await self._tell_owner_of_signup(email_addr)
        return auth_pb2.RegisterResponse(account=account_message(account))

    async def Login(self, request: auth_pb2.LoginRequest, context: grpc.aio.ServicerContext) -> auth_pb2.LoginResponse:
        email_addr = domain.normalise_email(request.email)
        attempt = await self.throttle.admit(email_addr, client_address.current())
        async with self.db.read() as s:
            row = await store.find_account_by_email(s, email_addr)
        # Unknown email and wrong password take the same time and give the same answer.
        has_password = bool(row and row.password_hash)
        ok = await passwords.check_password(request.password, row.password_hash if row and has_password
                                            else await self._dummy())
        if not row or not ok or not has_password:
            # One outbox row per refused guess, and only for guesses the throttle let through: an attacker
            # writes no faster than the throttle lets them guess.
            async with self.db.transaction() as s:
                await moderation.security_event(
                    s, SecurityKind.KIND_SIGN_IN_FAILED, user_id=row.id if row else None,
                    detail="unknown email" if not row else "wrong password" if has_password else
                    "password sign-in to an account without a password")
            raise errors.unauthenticated("wrong email or password", "INVALID_CREDENTIALS")  # the slots stay taken
        await self.throttle.succeeded(attempt)
        return auth_pb2.LoginResponse(**await self._sign_in(row, amr=["pwd"], method="password",
                                                             platform=request.platform, context=context))

    async def RefreshToken(self, request: auth_pb2.RefreshTokenRequest,
                           context: grpc.aio.ServicerContext) -> auth_pb2.RefreshTokenResponse:
        now = utcnow()
        async with self.db.transaction() as s:
            token = await store.find_refresh_token(s, domain.sha256(request.refresh_token))
            if token is not None:
                # A suspension revoked the token too; its holder is told why rather than that it is invalid.
                refused = domain.sign_in_refused(await store.get_account(s, token.account_id), now)
                if refused:
                    raise refused
            if token is None or not domain.refresh_token_usable(revoke_time=token.revoke_time,
                                                                expire_time=token.expire_time, now=now):
                raise errors.unauthenticated("refresh token is invalid, expired or revoked", "REFRESH_TOKEN_INVALID")
            # Rotation is a compare-and-set, so two concurrent uses of one token count as reuse.
            reused = not await store.use_refresh_token(s, token.id, now)
            if not reused:
                row = await store.get_account(s, token.account_id)
                session = await store.find_session(s, token.family_id)
                access, refresh = await self._issue(s, row, session_id=token.family_id,
                                                    amr=session.amr.split() if session else ["pwd"])
                await store.touch_session(s, token.family_id, now=now,
                                          expire_time=now + dt.timedelta(seconds=self.s.refresh_token_ttl_seconds))
        if reused:
            # A spent token came back: it was stolen or replayed. End every session of this login.
            await self._revoke_family(token.family_id)
            async with self.db.transaction() as s:
                await moderation.security_event(s, SecurityKind.KIND_REFRESH_TOKEN_REUSED, user_id=token.account_id,
                                                detail=f"session {token.family_id} revoked")
            raise errors.unauthenticated("refresh token was already used; the session has been revoked",
                                         "REFRESH_TOKEN_REUSED")
        return auth_pb2.RefreshTokenResponse(**self._tokens(access, refresh))

    async def Logout(self, request: auth_pb2.LogoutRequest,
                     context: grpc.aio.ServicerContext) -> auth_pb2.LogoutResponse:
        async with self.db.read() as s:
            family = await store.find_refresh_token_family(s, domain.sha256(request.refresh_token))
        # Unknown tokens get the same empty answer: logout reveals nothing about tokens.
        if family:
            await self._revoke_family(family)
        return auth_pb2.LogoutResponse()

    async def VerifyEmail(self, request: auth_pb2.VerifyEmailRequest,
                          context: grpc.aio.ServicerContext) -> auth_pb2.VerifyEmailResponse:
        now = utcnow()
        async with self.db.transaction() as s:
            token = await store.find_verification_token(s, domain.sha256(request.token))
            if token is None:
                raise errors.invalid_argument(("token", "unknown verification token"),
                                              reason="VERIFICATION_TOKEN_INVALID")
            domain.check_verification_token(use_time=token.use_time, expire_time=token.expire_time, now=now)
            if not await store.use_verification_token(s, token.token_hash, now):
                raise domain.verification_link_used()
            await store.mark_email_verified(s, token.account_id)
            await emit(s, auth_events.UserEmailVerified(user=f"users/{token.account_id}"))
            row = await store.get_account(s, token.account_id)
        return auth_pb2.VerifyEmailResponse(account=account_message(row))

    async def SendVerificationEmail(self, request: auth_pb2.SendVerificationEmailRequest,
                                    context: grpc.aio.ServicerContext) -> auth_pb2.SendVerificationEmailResponse:
        caller = principal.require()
        count, ttl = await self.cache.incr(f"verification-email:{caller.user_id}", 3600)
        if count > domain.MAX_VERIFICATION_EMAILS_PER_HOUR:
            raise errors.resource_exhausted("too many verification emails; try again later",
                                            "VERIFICATION_EMAIL_THROTTLED", ttl,
                                            limit=domain.MAX_VERIFICATION_EMAILS_PER_HOUR)
        async with self.db.transaction() as s:
            row = await store.find_account(s, caller.user_id)
            if row is None:
                raise errors.not_found("auth.petplatform.dev/Account", caller.resource_name)
            if row.email_verified:
                raise errors.failed_precondition("the email is already verified", "EMAIL_ALREADY_VERIFIED")
            await new_verification_email(s, self.s, row.id, row.email)
        return auth_pb2.SendVerificationEmailResponse()

    async def GetJwks(self, request: auth_pb2.GetJwksRequest,
                      context: grpc.aio.ServicerContext) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.JsonWebKey(**k) for k in self.keys.jwks])

    async def _tell_owner_of_signup(self, email_addr: str) -> None:
        count, _ = await self.cache.incr(f"signup-notice:{domain.sha256(email_addr)}", 3600)
        if count > domain.MAX_SIGNUP_NOTICES_PER_HOUR:
            return
        async with self.db.transaction() as s:
            await emit(s, event_pb2.EmailRequested(
                to=email_addr, subject="Someone tried to sign up with your email",
                text_body=("Someone, perhaps you, tried to create a Pet Platform account with this email address, "
                           "which already has one. Nothing was created or changed.\n\n"
                           f"If it was you, sign in with your password instead: {self.s.public_url}\n\n"
                           "If it was not you, you can ignore this message.\n")))

    async def _issue(self, session: AsyncSession, account: Row, *, session_id: str, amr: list[str]) -> tuple[str, str]:
        """An access token and a refresh token of a session (its refresh token family)."""
        family_id = session_id
        now = utcnow()
        access = jwt.encode(
            domain.access_claims(issuer=self.s.jwt_issuer, account_id=account.id, role=account.role, amr=amr,
                                 session_id=family_id, now=now, ttl_seconds=self.s.access_token_ttl_seconds),
            self.keys.private_key, algorithm="ES256", headers={"kid": self.keys.kid})
        refresh = secrets.token_urlsafe(32)
        await store.add_refresh_token(
            session, token_id=new_id(), family_id=family_id, account_id=account.id, token_hash=domain.sha256(refresh),
            create_time=now, expire_time=now + dt.timedelta(seconds=self.s.refresh_token_ttl_seconds))
        return access, refresh

    async def _sign_in(self, account: Row, *, amr: list[str], method: str, platform: int,
                       context: grpc.aio.ServicerContext) -> dict[str, Any]:
        """A first factor passed: with two-factor authentication on, a challenge for VerifyMfa; else a new
        session and its tokens."""
        await self._refuse_inactive(account)
        device = {"user_agent": user_agent(context), "platform": PLATFORM_NAMES.get(platform, "unspecified"),
                  "client_address": client_address.current()}
        async with self.db.read() as s:
            factor = await store.find_mfa(s, account.id)
        if factor is not None and factor.confirm_time is not None:
            challenge = secrets.token_urlsafe(32)
            await self.cache.set(challenge_key(challenge), json.dumps(
                {"account": account.id, "amr": amr, "method": method, **device}).encode(),
                ttl_seconds=self.s.mfa_challenge_seconds)
            return {"mfa_challenge": challenge}
        async with self.db.transaction() as s:
            access, refresh = await self._new_session(s, account, amr=amr, method=method, **device)
        return self._tokens(access, refresh)

    async def _new_session(self, s: AsyncSession, account: Row, *, amr: list[str], method: str, user_agent: str,
                           platform: str, client_address: str) -> tuple[str, str]:
        now = utcnow()
        session_id = new_id()
        known = await store.known_device(s, account.id, user_agent=user_agent, platform=platform)
        await store.add_session(s, session_id=session_id, account_id=account.id, user_agent=user_agent,
                                platform=platform, client_address=client_address, amr=" ".join(amr), method=method,
                                now=now, expire_time=now + dt.timedelta(seconds=self.s.refresh_token_ttl_seconds))
        if known is False:  # not the first sign-in ever, and not from a device seen before
            await self._security_email(s, account, "New sign-in to your Pet Platform account", (
                f"Your account was signed in to from a new device:\n\n  {user_agent or 'unknown device'} "
                f"({platform}), from {client_address}, at {now:%Y-%m-%d %H:%M} UTC.\n\n"
                "If this was you, there is nothing to do. If not, change your password and end that session "
                "in your account's security settings."))
        return await self._issue(s, account, session_id=session_id, amr=amr)

    async def _security_email(self, s: AsyncSession, account: Row, subject: str, text: str) -> None:
        """Tells the person of a change to their account's security, in the transaction of the change."""
        if account.email:
            await emit(s, event_pb2.EmailRequested(to=account.email, subject=subject, text_body=text + "\n"))

    async def _refuse_inactive(self, account: Row) -> None:
        """A suspended or banned account proved its first factor: the sign-in is refused, and recorded. A
        suspension past its end is lifted here if the sweep has not yet done so."""
        if domain.suspension_lapsed(account, utcnow()):
            async with self.db.transaction() as s:
                await moderation.end_lapsed_suspension(s, self.revocations, account.id,
                                                       access_token_ttl=self.s.access_token_ttl_seconds)
            return
        refused = domain.sign_in_refused(account, utcnow())
        if refused:
            async with self.db.transaction() as s:
                await moderation.security_event(s, SecurityKind.KIND_SIGN_IN_FAILED, user_id=account.id,
                                                detail=f"account {account.status}")
            raise refused

    def _tokens(self, access: str, refresh: str) -> dict[str, Any]:
        return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
                "expires_in": self.s.access_token_ttl_seconds, "refresh_expires_in": self.s.refresh_token_ttl_seconds}

    async def _revoke_family(self, *family_ids: str) -> None:
        """Ends sessions: their refresh tokens at once, their access tokens wherever the revocation list is
        checked (every service's interceptor and the edge)."""
        async with self.db.transaction() as s:
            for family_id in family_ids:
                await store.revoke_refresh_token_family(s, family_id, utcnow())
        for family_id in family_ids:
            await self.revocations.revoke(family_id, ttl_seconds=self.s.access_token_ttl_seconds + 60)

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await passwords.hash_password(secrets.token_urlsafe(16), self.s.bcrypt_rounds)
        return self._dummy_hash

    # --- sessions ---

    async def ListSessions(self, request: auth_pb2.ListSessionsRequest,
                           context: grpc.aio.ServicerContext) -> auth_pb2.ListSessionsResponse:
        caller = principal.require()
        (user_id,) = parse_name(request.parent, "users/{}", "parent")
        if user_id != caller.user_id and not caller.admitted(access_pb2.ACCESS_SUPPORT):
            raise errors.permission_denied("you can only list your own sessions")
        size = page_size(request.page_size)
        position = decode_page_token(request.page_token, request)
        after = (dt.datetime.fromisoformat(position[0]), position[1]) if position else None
        async with self.db.read() as s:
            found = await store.live_sessions_page(s, user_id, utcnow(), after=after, size=size)
        rows, token = pagination.page(found, size, lambda r: [r.create_time.isoformat(), r.id], request)
        return auth_pb2.ListSessionsResponse(sessions=[session_message(r, caller.session_id) for r in rows],
                                             next_page_token=token)

    async def RevokeSession(self, request: auth_pb2.RevokeSessionRequest,
                            context: grpc.aio.ServicerContext) -> auth_pb2.RevokeSessionResponse:
        caller = principal.require()
        parent, _, session_id = request.name.rpartition("/sessions/")
        (user_id,) = parse_name(parent, "users/{}", "name")
        if session_id != "-":
            parse_name(request.name, "users/{}/sessions/{}")
        if user_id != caller.user_id:
            raise errors.permission_denied("you can only end your own sessions")
        async with self.db.read() as s:
            if session_id == "-":
                ids = [r.id for r in await store.live_sessions(s, user_id, utcnow()) if r.id != caller.session_id]
            else:
                row = await store.find_session(s, session_id)
                if row is None or row.account_id != user_id:
                    raise errors.not_found("auth.petplatform.dev/Session", request.name)
                ids = [] if row.revoke_time is not None else [row.id]
        await self._revoke_family(*ids)
        return auth_pb2.RevokeSessionResponse(revoked_count=len(ids))

    # --- two-factor authentication ---

    async def StartMfaEnrollment(self, request: auth_pb2.StartMfaEnrollmentRequest,
                                 context: grpc.aio.ServicerContext) -> auth_pb2.StartMfaEnrollmentResponse:
        caller = principal.require()
        secret = mfa.new_secret()
        async with self.db.transaction() as s:
            account = await self._account(s, caller)
            factor = await store.find_mfa(s, caller.user_id)
            if factor is not None and factor.confirm_time is not None:
                raise errors.failed_precondition("two-factor authentication is already on", "MFA_ALREADY_ENABLED")
            key_id, sealed = self.secret_box.seal(account_id=caller.user_id, secret=secret)
            await store.put_pending_mfa(s, caller.user_id, sealed=sealed, key_id=key_id, now=utcnow())
        uri = mfa.otpauth_uri(secret, account.email or account.display_name)
        return auth_pb2.StartMfaEnrollmentResponse(secret=secret, otpauth_uri=uri, qr_code_png=mfa.qr_png(uri))

    async def ConfirmMfaEnrollment(self, request: auth_pb2.ConfirmMfaEnrollmentRequest,
                                   context: grpc.aio.ServicerContext) -> auth_pb2.ConfirmMfaEnrollmentResponse:
        caller = principal.require()
        codes = mfa.new_recovery_codes()
        attempt = await self._admit_code(caller.user_id)
        async with self.db.transaction() as s:
            account = await self._account(s, caller)
            factor = await store.find_mfa(s, caller.user_id)
            if factor is None:
                raise errors.failed_precondition("start the enrollment first", "MFA_NOT_STARTED")
            if factor.confirm_time is not None:
                raise errors.failed_precondition("two-factor authentication is already on", "MFA_ALREADY_ENABLED")
            await self._check_totp(s, factor, request.code)
            await store.confirm_mfa(s, caller.user_id, utcnow())
            await store.replace_recovery_codes(s, caller.user_id, [mfa.recovery_code_hash(c) for c in codes])
            # The code just given is the second factor of the calling session: its next tokens say so.
            session = await store.find_session(s, caller.session_id)
            if session is not None:
                await store.set_session_amr(s, session.id, " ".join(with_mfa(session.amr.split(), "otp")))
            await moderation.security_event(s, SecurityKind.KIND_MFA_CHANGED, user_id=account.id,
                                            detail="two-factor authentication turned on")
            await self._security_email(s, account, "Two-factor authentication is on", (
                "Two-factor authentication was turned on for your Pet Platform account: signing in now needs a "
                "code from your authenticator app. Keep your recovery codes somewhere safe.\n\n"
                "If this was not you, contact us at once."))
        await self.throttle.succeeded(attempt)
        return auth_pb2.ConfirmMfaEnrollmentResponse(recovery_codes=codes)

    async def VerifyMfa(self, request: auth_pb2.VerifyMfaRequest,
                        context: grpc.aio.ServicerContext) -> auth_pb2.VerifyMfaResponse:
        key = challenge_key(request.mfa_challenge)
        raw = await self.cache.get(key)
        if raw is None:
            raise errors.unauthenticated("the sign-in challenge is unknown or has expired; sign in again",
                                         "MFA_CHALLENGE_INVALID")
        pending = json.loads(raw)
        account_id = pending["account"]
        attempt = await self._admit_code(account_id)
        try:
            access, refresh, used_recovery, left = await self._second_factor(request, pending, account_id)
        except errors.ApiError as e:
            if e.reason in ("MFA_CODE_INVALID", "MFA_CODE_USED"):
                async with self.db.transaction() as s:
                    await moderation.security_event(s, SecurityKind.KIND_SIGN_IN_FAILED, user_id=account_id,
                                                    detail="wrong second factor")
            raise
        await self.cache.delete(key)
        await self.throttle.succeeded(attempt)
        return auth_pb2.VerifyMfaResponse(**self._tokens(access, refresh), recovery_code_used=used_recovery,
                                          recovery_codes_left=left)

    async def _second_factor(self, request: auth_pb2.VerifyMfaRequest, pending: dict[str, Any],
                             account_id: str) -> tuple[str, str, bool, int]:
        """Checks the code of a pending sign-in and opens its session: (access, refresh, recovery code used,
        recovery codes left)."""
        key = challenge_key(request.mfa_challenge)
        now = utcnow()
        async with self.db.transaction() as s:
            factor = await store.find_mfa(s, account_id)
            if factor is None or factor.confirm_time is None:  # turned off meanwhile
                raise errors.unauthenticated("the sign-in challenge is no longer valid; sign in again",
                                             "MFA_CHALLENGE_INVALID")
            used_recovery = not mfa.looks_like_totp(request.code)
            if used_recovery:
                if not await store.use_recovery_code(s, account_id, mfa.recovery_code_hash(request.code), now):
                    raise errors.unauthenticated("wrong or already used recovery code", "MFA_CODE_INVALID")
            else:
                await self._check_totp(s, factor, request.code, signing_in=True)
            # One challenge, one session: of two concurrent answers only the first completes it.
            claimed, _ = await self.cache.incr(f"{key}:claimed", self.s.mfa_challenge_seconds)
            if claimed != 1:
                raise errors.unauthenticated("the sign-in challenge was already completed", "MFA_CHALLENGE_INVALID")
            account = await store.get_account(s, account_id)
            refused = domain.sign_in_refused(account, now)  # suspended since the password was checked
            if refused:
                raise refused
            access, refresh = await self._new_session(
                s, account, amr=with_mfa(pending["amr"], "otp"), method=pending["method"],
                user_agent=pending["user_agent"], platform=pending["platform"],
                client_address=pending["client_address"])
            left = await store.recovery_codes_left(s, account_id)
        return access, refresh, used_recovery, left

    async def DisableMfa(self, request: auth_pb2.DisableMfaRequest,
                         context: grpc.aio.ServicerContext) -> auth_pb2.DisableMfaResponse:
        caller = principal.require()
        attempt = await self._admit_code(caller.user_id)
        async with self.db.read() as s:
            account = await self._account(s, caller)
        if account.password_hash and not await passwords.check_password(request.password, account.password_hash):
            raise errors.permission_denied("wrong password", "INVALID_CREDENTIALS")
        async with self.db.transaction() as s:
            factor = await store.find_mfa(s, caller.user_id)
            if factor is None or factor.confirm_time is None:
                raise errors.failed_precondition("two-factor authentication is not on", "MFA_NOT_ENABLED")
            await self._check_totp(s, factor, request.code)
            await store.delete_mfa(s, caller.user_id)
            await moderation.security_event(s, SecurityKind.KIND_MFA_CHANGED, user_id=account.id,
                                            detail="two-factor authentication turned off")
            await self._security_email(s, account, "Two-factor authentication is off", (
                "Two-factor authentication was turned off for your Pet Platform account: signing in needs only "
                "your password again.\n\nIf this was not you, change your password and turn it back on."))
        await self.throttle.succeeded(attempt)
        return auth_pb2.DisableMfaResponse()

    async def RegenerateRecoveryCodes(self, request: auth_pb2.RegenerateRecoveryCodesRequest,
                                      context: grpc.aio.ServicerContext) -> auth_pb2.RegenerateRecoveryCodesResponse:
        caller = principal.require()
        codes = mfa.new_recovery_codes()
        attempt = await self._admit_code(caller.user_id)
        async with self.db.transaction() as s:
            factor = await store.find_mfa(s, caller.user_id)
            if factor is None or factor.confirm_time is None:
                raise errors.failed_precondition("two-factor authentication is not on", "MFA_NOT_ENABLED")
            await self._check_totp(s, factor, request.code)
            await store.replace_recovery_codes(s, caller.user_id, [mfa.recovery_code_hash(c) for c in codes])
        await self.throttle.succeeded(attempt)
        return auth_pb2.RegenerateRecoveryCodesResponse(recovery_codes=codes)

    async def _admit_code(self, account_id: str):
        """Wrong codes are throttled as wrong passwords are, per account and address (their own counters)."""
        return await self.throttle.admit(f"mfa:{account_id}", client_address.current(), reason="MFA_THROTTLED")

    async def _check_totp(self, s: AsyncSession, factor: Row, code: str, *, signing_in: bool = False) -> None:
        """Accepts a current code once: its time step is recorded, and neither it nor an older one passes again.
        `signing_in`: the code completes a sign-in (VerifyMfa), else it confirms a change by a signed-in person."""
        error = errors.unauthenticated if signing_in else errors.permission_denied
        try:
            secret = self.secret_box.open(account_id=factor.account_id, key_id=factor.secret_key_id,
                                          stored=factor.secret)
        except SecretUnreadable as e:
            # Our fault, not the caller's, and not one a retry mends: the operator must configure the key.
            # The person can still sign in with a recovery code (only their hashes are kept, no key needed).
            log.error("TOTP secret of users/%s unreadable: %s", factor.account_id, e)
            hint = "sign in with a recovery code, or try again later" if signing_in else "try again later"
            raise errors.failed_precondition(f"authenticator codes cannot be checked at the moment; {hint}",
                                             "MFA_SECRET_UNAVAILABLE") from None
        step = mfa.matching_step(secret, code, utcnow())
        if step is None:
            raise error("wrong code", "MFA_CODE_INVALID")
        if not await store.use_mfa_step(s, factor.account_id, step):
            raise error("this code was already used; wait for the next one", "MFA_CODE_USED")

    async def _account(self, s: AsyncSession, caller: principal.Principal) -> Row:
        row = await store.find_account(s, caller.user_id)
        if row is None:
            raise errors.not_found("auth.petplatform.dev/Account", caller.resource_name)
        return row

    # --- staff: accounts, roles, status ---

    async def GetAccount(self, request: auth_pb2.GetAccountRequest,
                         context: grpc.aio.ServicerContext) -> auth_pb2.GetAccountResponse:
        caller = principal.require()
        (user_id,) = parse_name(request.name, "users/{}")
        if user_id != caller.user_id and not caller.admitted(access_pb2.ACCESS_SUPPORT):
            raise errors.permission_denied("only the account's owner and staff can read it", "STAFF_ONLY")
        async with self.db.read() as s:
            row = await store.find_account(s, user_id)
            if row is None:
                raise errors.not_found("auth.petplatform.dev/Account", request.name)
            account = account_message(row)
            account.mfa_enabled = await store.mfa_enabled(s, user_id)
        return auth_pb2.GetAccountResponse(account=account)

    async def ListAccounts(self, request: auth_pb2.ListAccountsRequest,
                           context: grpc.aio.ServicerContext) -> auth_pb2.ListAccountsResponse:
        size = page_size(request.page_size)
        position = decode_page_token(request.page_token, request)
        role = self._named(domain.ROLE_NAMES, request.role, "role") if request.role else None
        status = self._named(domain.STATUS_NAMES, request.status, "status") if request.status else None
        after = (dt.datetime.fromisoformat(position[0]), position[1]) if position else None
        async with self.db.read() as s:
            found = await store.list_accounts(s, email=domain.normalise_email(request.email) if request.email else None,
                                             role=role, status=status, after=after, size=size)
        rows, token = pagination.page(found, size, lambda r: [r.create_time.isoformat(), r.id], request)
        return auth_pb2.ListAccountsResponse(accounts=[account_message(r) for r in rows], next_page_token=token)

    async def SetAccountRole(self, request: auth_pb2.SetAccountRoleRequest,
                             context: grpc.aio.ServicerContext) -> auth_pb2.SetAccountRoleResponse:
        caller = principal.require()
        (user_id,) = parse_name(request.name, "users/{}")
        role = self._named(domain.ROLE_NAMES, request.role, "role")
        async with self.db.transaction() as s:
            admins = await store.lock_admins(s)
            account = await store.lock_account(s, user_id)
            if account is None:
                raise errors.not_found("auth.petplatform.dev/Account", request.name)
            if account.role != role:
                if account.role == "admin" and not [a for a in admins if a != user_id]:
                    raise errors.failed_precondition("the last admin cannot stop being one; make another admin "
                                                     "first", "LAST_ADMIN")
                await store.set_role(s, user_id, role)
                # Tokens carry the role: the account signs in again to act with the new one.
                await moderation.end_sessions(s, self.revocations, user_id,
                                              access_token_ttl=self.s.access_token_ttl_seconds)
                await emit(s, auth_events.UserRoleChanged(user=request.name, role=domain.ROLES[role],
                                                          previous_role=domain.ROLES[account.role],
                                                          actor=caller.resource_name))
            row = await store.get_account(s, user_id)
        return auth_pb2.SetAccountRoleResponse(account=account_message(row))

    async def SetAccountStatus(self, request: auth_pb2.SetAccountStatusRequest,
                               context: grpc.aio.ServicerContext) -> auth_pb2.SetAccountStatusResponse:
        caller = principal.require()
        (user_id,) = parse_name(request.name, "users/{}")
        status = self._named(domain.STATUS_NAMES, request.status, "status")
        reason = domain.check_status_reason(request.reason)
        end_time = domain.check_suspension_end(
            request.end_time.ToDatetime(tzinfo=dt.timezone.utc) if request.HasField("end_time") else None,
            status=status, now=utcnow())
        if user_id == caller.user_id:
            raise errors.permission_denied("you cannot change your own account's status", "OWN_ACCOUNT")
        async with self.db.transaction() as s:
            account = await store.lock_account(s, user_id)
            if account is None:
                raise errors.not_found("auth.petplatform.dev/Account", request.name)
            if not caller.is_admin:
                if account.role in domain.STAFF_ROLES:
                    raise errors.permission_denied("only admins change a staff account's status", "ADMIN_ONLY")
                if account.status == "banned" and status != "banned":
                    raise errors.permission_denied("only admins lift a ban", "ADMIN_ONLY")
            await moderation.change_status(s, self.revocations, account, status=status, reason=reason,
                                           actor=caller.resource_name, case="", end_time=end_time,
                                           access_token_ttl=self.s.access_token_ttl_seconds)
            row = await store.get_account(s, user_id)
        return auth_pb2.SetAccountStatusResponse(account=account_message(row))

    @staticmethod
    def _named(names: Mapping[Any, str], value: int, field: str) -> str:
        """The stored name of an enum value of the request, INVALID_ARGUMENT for an unset or unknown one."""
        if value not in names:
            raise errors.invalid_argument((field, f"must be one of {', '.join(sorted(names.values()))}"))
        return names[value]

    # --- identity providers ---

    async def SignInWithProvider(self, request: auth_pb2.SignInWithProviderRequest,
                                 context: grpc.aio.ServicerContext) -> auth_pb2.SignInWithProviderResponse:
        provider = self.providers.get(request.provider)
        if request.authorization_code:
            if request.id_token:
                raise errors.invalid_argument(("id_token", "send either id_token or authorization_code"))
            if not request.code_verifier or not request.redirect_uri:
                raise errors.invalid_argument(*[(f, "required with authorization_code")
                                                for f in ("code_verifier", "redirect_uri")
                                                if not getattr(request, f)])
            id_token = await provider.exchange(code=request.authorization_code, code_verifier=request.code_verifier,
                                               redirect_uri=request.redirect_uri)
            platform = auth_pb2.CLIENT_PLATFORM_WEB
        elif request.id_token:
            id_token, platform = request.id_token, request.platform
        else:
            raise errors.invalid_argument(("id_token", "send the provider's ID token (or an authorization_code)"),
                                          reason="MISSING_FIELD")
        identity = await self._verified(provider, id_token, nonce=request.nonce, platform=platform)
        account, created = await self._account_for(identity, request.display_name)
        answer = await self._sign_in(account, amr=["fed"], method=f"provider:{provider.name}", platform=platform,
                                     context=context)
        return auth_pb2.SignInWithProviderResponse(**answer, account=account_message(account),
                                                   account_created=created)

    async def LinkProvider(self, request: auth_pb2.LinkProviderRequest,
                           context: grpc.aio.ServicerContext) -> auth_pb2.LinkProviderResponse:
        caller = principal.require()
        provider = self.providers.get(request.provider)
        identity = await self._verified(provider, request.id_token, nonce=request.nonce, platform=request.platform)
        now = utcnow()
        try:
            async with self.db.transaction() as s:
                account = await self._account(s, caller)
                link = await store.find_link(s, provider.name, identity.subject)
                if link is not None:
                    if link.account_id != caller.user_id:
                        raise errors.already_exists("auth.petplatform.dev/ProviderLink", provider.name,
                                                    f"this {provider.name} account is linked to another account")
                    return auth_pb2.LinkProviderResponse(link=link_message(link))
                await store.add_link(s, provider=provider.name, subject=identity.subject, account_id=account.id,
                                     email=identity.email, now=now)
                await self._security_email(s, account, f"{provider.name.title()} sign-in was linked", (
                    f"Your Pet Platform account can now be signed in to with {provider.name.title()}"
                    f"{f' ({identity.email})' if identity.email else ''}.\n\n"
                    "If this was not you, unlink it in your account's security settings and change your password."))
        except IntegrityError:
            raise errors.already_exists("auth.petplatform.dev/ProviderLink", provider.name,
                                        f"your account is already linked to a {provider.name} account") from None
        return auth_pb2.LinkProviderResponse(link=auth_pb2.ProviderLink(
            provider=provider.name, email=identity.email or "", create_time=timestamp(now)))

    async def UnlinkProvider(self, request: auth_pb2.UnlinkProviderRequest,
                             context: grpc.aio.ServicerContext) -> auth_pb2.UnlinkProviderResponse:
        caller = principal.require()
        async with self.db.transaction() as s:
            account = await self._account(s, caller)
            links = await store.links_of(s, caller.user_id)
            if not any(link.provider == request.provider for link in links):
                raise errors.not_found("auth.petplatform.dev/ProviderLink", request.provider)
            if len(links) + (1 if account.password_hash else 0) <= 1:
                raise errors.failed_precondition("this is the only way to sign in to your account; add another "
                                                 "first", "LAST_SIGN_IN_METHOD")
            await store.delete_link(s, caller.user_id, request.provider)
        return auth_pb2.UnlinkProviderResponse()

    async def _verified(self, provider: Provider, id_token: str, *, nonce: str, platform: int) -> Identity:
        """The identity an ID token proves, once: a token presented again (replayed) is refused."""
        identity = await provider.verify(id_token, nonce=nonce, platform=platform)
        ttl = max(1.0, (identity.expire_time - utcnow()).total_seconds() + 60)
        count, _ = await self.cache.incr(f"id-token:{provider.name}:{domain.sha256(id_token)}", ttl)
        if count > 1:
            raise errors.unauthenticated("this ID token was already used", "ID_TOKEN_REPLAYED")
        return identity

    async def _account_for(self, identity: Identity, display_name: str) -> tuple[Row, bool]:
        """The account linked to the identity, or a new one. An identity whose verified email has an account is
        never signed in to it: only that account's owner can link it (LinkProvider, signed in)."""
        email = domain.normalise_email(identity.email) if identity.email and identity.email_verified else None
        async with self.db.read() as s:
            link = await store.find_link(s, identity.provider, identity.subject)
            if link is not None:
                return await store.get_account(s, link.account_id), False
            taken = email is not None and await store.find_account_by_email(s, email) is not None
        if taken:
            raise self._account_exists(identity)
        account_id, now = new_id(), utcnow()
        name = pick_display_name(display_name, identity.name, email)
        role = domain.role_for(email, self._admins) if email else "user"
        try:
            async with self.db.transaction() as s:
                await store.add_account(s, account_id=account_id, email=email, password_hash=None, display_name=name,
                                        role=role, create_time=now, email_verified=email is not None)
                await store.add_link(s, provider=identity.provider, subject=identity.subject, account_id=account_id,
                                     email=identity.email, now=now)
                await emit(s, auth_events.UserCreated(user=f"users/{account_id}", email=email or "",
                                                      display_name=name))
                if email:
                    await emit(s, auth_events.UserEmailVerified(user=f"users/{account_id}"))
                return await store.get_account(s, account_id), True
        except IntegrityError:
            # A concurrent first sign-in of the same identity made the link (or someone registered the email):
            # what it made is what this one finds.
            async with self.db.read() as s:
                link = await store.find_link(s, identity.provider, identity.subject)
                if link is not None:
                    return await store.get_account(s, link.account_id), False
            raise self._account_exists(identity) from None

    def _account_exists(self, identity: Identity) -> errors.ApiError:
        return errors.failed_precondition(
            f"an account with this email exists; sign in to it (with its password) and link {identity.provider} "
            "there", "ACCOUNT_EXISTS", provider=identity.provider)


def challenge_key(challenge: str) -> str:
    return f"mfa-challenge:{domain.sha256(challenge)}"


def with_mfa(amr: list[str], factor: str) -> list[str]:
    """The methods of a sign-in once its second factor passed (RFC 8176: `mfa` marks two or more)."""
    return [*[a for a in amr if a not in (factor, "mfa")], factor, "mfa"]


def user_agent(context: grpc.aio.ServicerContext) -> str:
    """The device as the client names itself: gRPC-Web's x-user-agent (the edge sets it from a REST caller's
    User-Agent), else gRPC's user-agent."""
    md = dict(context.invocation_metadata() or ())
    value = str(md.get("x-user-agent") or md.get("user-agent") or "")
    return "".join(c for c in value if c.isprintable())[:MAX_USER_AGENT]


def pick_display_name(*candidates: str | None) -> str:
    """The first candidate that is an acceptable display name (an email's local part last), else a neutral one."""
    for c in candidates:
        name = (c.split("@")[0] if c and "@" in c else (c or "")).strip()[:64]
        violations: list = []
        if name:
            check_display_name(violations, "display_name", name)
            if not violations:
                return name
    return "New member"


def session_message(row: Row, current_session: str) -> auth_pb2.Session:
    return auth_pb2.Session(
        name=f"users/{row.account_id}/sessions/{row.id}", user_agent=row.user_agent,
        platform=cast(Any, PLATFORMS.get(row.platform, 0)), client_address=row.client_address,
        create_time=timestamp(row.create_time), last_use_time=timestamp(row.last_use_time),
        sign_in_method=row.method + ("+mfa" if "mfa" in row.amr.split() else ""), current=row.id == current_session)


def link_message(row: Row) -> auth_pb2.ProviderLink:
    return auth_pb2.ProviderLink(provider=row.provider, email=row.email or "", create_time=timestamp(row.create_time))
