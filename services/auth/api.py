"""AuthService: accounts, login with throttling, rotating refresh tokens, email verification, JWKS."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import types
import unicodedata
import uuid

import jwt
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mesh import client_address, errors, principal
from mesh.cache import Cache
from mesh.config import Settings
from mesh.events import emit
from mesh.resources import check_display_name, new_id, timestamp
from mesh.sql import Database, utcnow
from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc
from petplatform.auth.v1 import events_pb2 as auth_events
from petplatform.common.v1 import event_pb2
from services.auth import passwords
from services.auth.keys import SigningKeys
from services.auth.store import accounts, refresh_tokens, verification_tokens
from services.auth.throttle import LoginThrottle

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
ROLES = {"user": auth_pb2.ROLE_USER, "admin": auth_pb2.ROLE_ADMIN}


def normalise_email(raw: str) -> str:
    return unicodedata.normalize("NFKC", raw).strip().lower()


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def account_message(row) -> auth_pb2.Account:
    return auth_pb2.Account(name=f"users/{row.id}", email=row.email, display_name=row.display_name,
                            email_verified=row.email_verified, role=ROLES[row.role],
                            create_time=timestamp(row.create_time))


async def new_verification_email(session, settings: Settings, account_id: str, email_addr: str) -> None:
    """Stores a single-use verification token and queues the email carrying it (email.send)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    await session.execute(verification_tokens.insert().values(
        token_hash=sha256(token), account_id=account_id, create_time=now,
        expire_time=now + dt.timedelta(seconds=settings.verification_token_ttl_seconds)))
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
        self._admins = {normalise_email(e) for e in settings.admin_emails}
        self._dummy_hash: str | None = None

    async def Register(self, request, context):
        email_addr = normalise_email(request.email)
        display_name = request.display_name.strip()
        violations: list = []
        if len(email_addr) > 254 or not _EMAIL.match(email_addr):
            violations.append(("email", "must be a valid email address"))
        check_display_name(violations, "display_name", display_name)
        why = passwords.problems(request.password, context=[email_addr, email_addr.split("@")[0], display_name])
        if why:
            violations.append(("password", why))
        if violations:
            raise errors.invalid_argument(*violations)
        # Hashed before anyone knows whether the email is taken: both answers take the same time.
        password_hash = await passwords.hash_password(request.password, self.s.bcrypt_rounds)
        account_id = new_id()
        row = {"id": account_id, "email": email_addr, "password_hash": password_hash, "display_name": display_name,
               "role": "admin" if email_addr in self._admins else "user", "email_verified": False,
               "create_time": utcnow()}
        try:
            async with self.db.transaction() as s:
                await s.execute(accounts.insert().values(**row))
                await emit(s, auth_events.UserCreated(
                    user=f"users/{account_id}", email=email_addr, display_name=display_name))
        except IntegrityError:
            # The email has an account. Saying so would tell anyone which emails have accounts, so the
            # caller gets the answer a new account gets (its id is never stored) and the owner an email.
            await self._tell_owner_of_signup(email_addr)
        return auth_pb2.RegisterResponse(account=account_message(types.SimpleNamespace(**row)))

    async def Login(self, request, context):
        email_addr = normalise_email(request.email)
        attempt = await self.throttle.admit(email_addr, client_address.current())
        async with self.db.transaction() as s:
            row = (await s.execute(sa.select(accounts).where(accounts.c.email == email_addr))).first()
        # Unknown email and wrong password take the same time and give the same answer.
        ok = await passwords.check_password(request.password, row.password_hash if row else await self._dummy())
        if not row or not ok:
            raise errors.unauthenticated("wrong email or password", "INVALID_CREDENTIALS")  # the slots stay taken
        await self.throttle.succeeded(attempt)
        async with self.db.transaction() as s:
            access, refresh = await self._issue(s, row, family_id=new_id())
        return auth_pb2.LoginResponse(**self._tokens(access, refresh))

    async def RefreshToken(self, request, context):
        now = utcnow()
        async with self.db.transaction() as s:
            token = (await s.execute(sa.select(refresh_tokens).where(
                refresh_tokens.c.token_hash == sha256(request.refresh_token)))).first()
            if token is None or token.revoke_time is not None or token.expire_time <= now:
                raise errors.unauthenticated("refresh token is invalid, expired or revoked", "REFRESH_TOKEN_INVALID")
            # Rotation is a compare-and-set, so two concurrent uses of one token count as reuse.
            rotated = await s.execute(refresh_tokens.update().where(
                refresh_tokens.c.id == token.id, refresh_tokens.c.use_time.is_(None)).values(use_time=now))
            reused = rotated.rowcount != 1
            if not reused:
                row = (await s.execute(sa.select(accounts).where(accounts.c.id == token.account_id))).one()
                access, refresh = await self._issue(s, row, family_id=token.family_id)
        if reused:
            # A spent token came back: it was stolen or replayed. End every session of this login.
            await self._revoke_family(token.family_id)
            raise errors.unauthenticated("refresh token was already used; the session has been revoked",
                                         "REFRESH_TOKEN_REUSED")
        return auth_pb2.RefreshTokenResponse(**self._tokens(access, refresh))

    async def Logout(self, request, context):
        async with self.db.transaction() as s:
            family = await s.scalar(sa.select(refresh_tokens.c.family_id).where(
                refresh_tokens.c.token_hash == sha256(request.refresh_token)))
        # Unknown tokens get the same empty answer: logout reveals nothing about tokens.
        if family:
            await self._revoke_family(family)
        return auth_pb2.LogoutResponse()

    async def VerifyEmail(self, request, context):
        now = utcnow()
        async with self.db.transaction() as s:
            token = (await s.execute(sa.select(verification_tokens).where(
                verification_tokens.c.token_hash == sha256(request.token)))).first()
            if token is None:
                raise errors.invalid_argument(("token", "unknown verification token"), reason="VERIFICATION_TOKEN_INVALID")
            if token.use_time is not None:
                raise errors.failed_precondition("this verification link was already used", "VERIFICATION_TOKEN_USED")
            if token.expire_time <= now:
                raise errors.failed_precondition("this verification link has expired; ask for a new one",
                                                 "VERIFICATION_TOKEN_EXPIRED")
            used = await s.execute(verification_tokens.update().where(
                verification_tokens.c.token_hash == token.token_hash,
                verification_tokens.c.use_time.is_(None)).values(use_time=now))
            if used.rowcount != 1:
                raise errors.failed_precondition("this verification link was already used", "VERIFICATION_TOKEN_USED")
            await s.execute(accounts.update().where(accounts.c.id == token.account_id).values(email_verified=True))
            await emit(s, auth_events.UserEmailVerified(user=f"users/{token.account_id}"))
            row = (await s.execute(sa.select(accounts).where(accounts.c.id == token.account_id))).one()
        return auth_pb2.VerifyEmailResponse(account=account_message(row))

    async def SendVerificationEmail(self, request, context):
        caller = principal.require()
        count, ttl = await self.cache.incr(f"verification-email:{caller.user_id}", 3600)
        if count > 5:
            raise errors.resource_exhausted("too many verification emails; try again later",
                                            "VERIFICATION_EMAIL_THROTTLED", ttl)
        async with self.db.transaction() as s:
            row = (await s.execute(sa.select(accounts).where(accounts.c.id == caller.user_id))).first()
            if row is None:
                raise errors.not_found("auth.petplatform.dev/Account", caller.resource_name)
            if row.email_verified:
                raise errors.failed_precondition("the email is already verified", "EMAIL_ALREADY_VERIFIED")
            await new_verification_email(s, self.s, row.id, row.email)
        return auth_pb2.SendVerificationEmailResponse()

    async def GetJwks(self, request, context):
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.JsonWebKey(**k) for k in self.keys.jwks])

    async def _tell_owner_of_signup(self, email_addr: str) -> None:
        # One notice an hour at most, so Register cannot be used to flood someone's mailbox.
        count, _ = await self.cache.incr(f"signup-notice:{sha256(email_addr)}", 3600)
        if count > 1:
            return
        async with self.db.transaction() as s:
            await emit(s, event_pb2.EmailRequested(
                to=email_addr, subject="Someone tried to sign up with your email",
                text_body=("Someone, perhaps you, tried to create a Pet Platform account with this email address, "
                           "which already has one. Nothing was created or changed.\n\n"
                           f"If it was you, sign in with your password instead: {self.s.public_url}\n\n"
                           "If it was not you, you can ignore this message.\n")))

    async def _issue(self, session, account, family_id: str) -> tuple[str, str]:
        now = utcnow()
        access = jwt.encode(
            {"iss": self.s.jwt_issuer, "sub": account.id, "sid": family_id, "role": account.role,
             "iat": now, "exp": now + dt.timedelta(seconds=self.s.access_token_ttl_seconds), "jti": uuid.uuid4().hex},
            self.keys.private_key, algorithm="ES256", headers={"kid": self.keys.kid})
        refresh = secrets.token_urlsafe(32)
        await session.execute(refresh_tokens.insert().values(
            id=new_id(), family_id=family_id, account_id=account.id, token_hash=sha256(refresh), create_time=now,
            expire_time=now + dt.timedelta(seconds=self.s.refresh_token_ttl_seconds)))
        return access, refresh

    def _tokens(self, access: str, refresh: str) -> dict:
        return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
                "expires_in": self.s.access_token_ttl_seconds, "refresh_expires_in": self.s.refresh_token_ttl_seconds}

    async def _revoke_family(self, family_id: str) -> None:
        async with self.db.transaction() as s:
            await s.execute(refresh_tokens.update().where(
                refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoke_time.is_(None)
            ).values(revoke_time=utcnow()))
        # Access tokens of the session stop working too (checked by every service's interceptor).
        await self.cache.set(principal.revoked_session_key(family_id), b"1",
                             ttl_seconds=self.s.access_token_ttl_seconds + 60)

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await passwords.hash_password(secrets.token_urlsafe(16), self.s.bcrypt_rounds)
        return self._dummy_hash
