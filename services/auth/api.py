"""AuthService: accounts, login with throttling, rotating refresh tokens, email verification, JWKS."""
from __future__ import annotations

import datetime as dt
import secrets
import types
from typing import Any

import grpc
import jwt
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import client_address, errors, principal
from mesh.cache import Cache
from mesh.config import Settings
from mesh.events import emit
from mesh.resources import new_id, timestamp
from mesh.sql import Database, Row, utcnow
from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc
from petplatform.auth.v1 import events_pb2 as auth_events
from petplatform.common.v1 import event_pb2
from services.auth import domain, passwords, store
from services.auth.keys import SigningKeys
from services.auth.throttle import LoginThrottle


def account_message(row: Row | types.SimpleNamespace) -> auth_pb2.Account:
    return auth_pb2.Account(name=f"users/{row.id}", email=row.email, display_name=row.display_name,
                            email_verified=row.email_verified, role=domain.ROLES[row.role],
                            create_time=timestamp(row.create_time))


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
    def __init__(self, db: Database, cache: Cache, settings: Settings, keys: SigningKeys):
        self.db = db
        self.cache = cache
        self.s = settings
        self.keys = keys
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
                                        create_time=utcnow())
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
        ok = await passwords.check_password(request.password, row.password_hash if row else await self._dummy())
        if not row or not ok:
            raise errors.unauthenticated("wrong email or password", "INVALID_CREDENTIALS")  # the slots stay taken
        await self.throttle.succeeded(attempt)
        async with self.db.transaction() as s:
            access, refresh = await self._issue(s, row, family_id=new_id())
        return auth_pb2.LoginResponse(**self._tokens(access, refresh))

    async def RefreshToken(self, request: auth_pb2.RefreshTokenRequest,
                           context: grpc.aio.ServicerContext) -> auth_pb2.RefreshTokenResponse:
        now = utcnow()
        async with self.db.transaction() as s:
            token = await store.find_refresh_token(s, domain.sha256(request.refresh_token))
            if token is None or not domain.refresh_token_usable(revoke_time=token.revoke_time,
                                                                expire_time=token.expire_time, now=now):
                raise errors.unauthenticated("refresh token is invalid, expired or revoked", "REFRESH_TOKEN_INVALID")
            # Rotation is a compare-and-set, so two concurrent uses of one token count as reuse.
            reused = not await store.use_refresh_token(s, token.id, now)
            if not reused:
                row = await store.get_account(s, token.account_id)
                access, refresh = await self._issue(s, row, family_id=token.family_id)
        if reused:
            # A spent token came back: it was stolen or replayed. End every session of this login.
            await self._revoke_family(token.family_id)
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

    async def _issue(self, session: AsyncSession, account: Row, family_id: str) -> tuple[str, str]:
        now = utcnow()
        access = jwt.encode(
            domain.access_claims(issuer=self.s.jwt_issuer, account_id=account.id, role=account.role,
                                 session_id=family_id, now=now, ttl_seconds=self.s.access_token_ttl_seconds),
            self.keys.private_key, algorithm="ES256", headers={"kid": self.keys.kid})
        refresh = secrets.token_urlsafe(32)
        await store.add_refresh_token(
            session, token_id=new_id(), family_id=family_id, account_id=account.id, token_hash=domain.sha256(refresh),
            create_time=now, expire_time=now + dt.timedelta(seconds=self.s.refresh_token_ttl_seconds))
        return access, refresh

    def _tokens(self, access: str, refresh: str) -> dict[str, Any]:
        return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
                "expires_in": self.s.access_token_ttl_seconds, "refresh_expires_in": self.s.refresh_token_ttl_seconds}

    async def _revoke_family(self, family_id: str) -> None:
        async with self.db.transaction() as s:
            await store.revoke_refresh_token_family(s, family_id, utcnow())
        # Access tokens of the session stop working too (checked by every service's interceptor).
        await self.cache.set(principal.revoked_session_key(family_id), b"1",
                             ttl_seconds=self.s.access_token_ttl_seconds + 60)

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await passwords.hash_password(secrets.token_urlsafe(16), self.s.bcrypt_rounds)
        return self._dummy_hash
