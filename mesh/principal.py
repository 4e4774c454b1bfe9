"""Who is calling: verified from the Bearer JWT by the server interceptor, read by servicers."""
from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable

import jwt

from mesh import errors
from mesh.revocation import Revocations
from petplatform.common.v1 import access_pb2

log = logging.getLogger(__name__)

ROLE_ADMIN, ROLE_MODERATOR, ROLE_SUPPORT = "admin", "moderator", "support"

# The staff access levels and the roles each admits. Staff act as such only from a session that passed
# two-factor authentication; without it the account is an ordinary user.
STAFF_ACCESS: dict[int, frozenset[str]] = {
    access_pb2.ACCESS_ADMIN: frozenset({ROLE_ADMIN}),
    access_pb2.ACCESS_MODERATOR: frozenset({ROLE_ADMIN, ROLE_MODERATOR}),
    access_pb2.ACCESS_SUPPORT: frozenset({ROLE_ADMIN, ROLE_MODERATOR, ROLE_SUPPORT}),
}


@dataclasses.dataclass(frozen=True)
class Principal:
    user_id: str
    role: str
    session_id: str
    # The session's authentication methods (the token's RFC 8176 `amr`): "mfa" once a second factor was verified.
    amr: tuple[str, ...] = ()

    @property
    def mfa(self) -> bool:
        return "mfa" in self.amr

    @property
    def is_admin(self) -> bool:
        """An admin acts as one only from a session that passed two-factor authentication; without it the
        account is an ordinary user (ACCESS_ADMIN methods refuse it, object checks see no admin)."""
        return self.admitted(access_pb2.ACCESS_ADMIN)

    def admitted(self, access: int) -> bool:
        """Whether this caller may call a method of a staff access level (ACCESS_SUPPORT and above)."""
        return self.mfa and self.role in STAFF_ACCESS[access]

    @property
    def resource_name(self) -> str:
        return f"users/{self.user_id}"


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)


def current() -> Principal | None:
    return _current.get()


def require() -> Principal:
    p = _current.get()
    if p is None:
        raise errors.unauthenticated()
    return p


def bind(p: Principal | None) -> contextvars.Token:
    return _current.set(p)


JwksSource = Callable[[], Awaitable[list[dict]]]


class KeySet:
    """A JSON Web Key Set fetched from `source` and cached for `ttl` seconds; an unknown kid triggers one
    refetch (at most every `min_refetch` seconds), so a key rotation is picked up without restarts and
    forged kids can't cause a fetch storm. Used for our access tokens and for identity providers' ID tokens."""

    def __init__(self, source: JwksSource, *, ttl: float = 300, min_refetch: float = 10):
        self._source = source
        self._ttl = ttl
        self._min_refetch = min_refetch
        self._keys: dict[str, object] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str):
        """The key with this id, or None."""
        fresh = time.monotonic() - self._fetched_at < self._ttl
        if kid not in self._keys or not fresh:
            async with self._lock:
                stale = time.monotonic() - self._fetched_at >= self._min_refetch
                if (kid not in self._keys and stale) or time.monotonic() - self._fetched_at >= self._ttl:
                    jwks = await self._source()
                    self._keys = {k["kid"]: jwt.PyJWK.from_json(json.dumps(k)).key for k in jwks if "kid" in k}
                    self._fetched_at = time.monotonic()
        return self._keys.get(kid)


LEEWAY_SECONDS = 10  # clock skew allowed on a token's times
VERIFIED_KEPT = 10_000  # verified tokens a verifier keeps (cleared when full)


class TokenVerifier:
    """Verifies ES256 access tokens against the auth service's JWKS (a KeySet)."""

    def __init__(self, jwks: JwksSource, revocations: Revocations, *, issuer: str, ttl: float = 300,
                 min_refetch: float = 10):
        self._keys = KeySet(jwks, ttl=ttl, min_refetch=min_refetch)
        self._revocations = revocations
        self._issuer = issuer
        self._verified: dict[str, tuple[str, dict]] = {}  # token -> its key id and claims, once verified

    async def authenticate(self, authorization: str | None, access: int) -> Principal | None:
        """The caller an `authorization` header names, as far as the method's access level needs one:
        None for an anonymous call to a public method, UNAUTHENTICATED where a user is needed. The one
        rule for the services' interceptor and the edge."""
        scheme, _, token = (authorization or "").partition(" ")
        principal = None
        if authorization:
            if scheme.lower() != "bearer" or not token.strip():
                if access != access_pb2.ACCESS_PUBLIC:
                    raise errors.unauthenticated("authorization must be 'Bearer <token>'", "TOKEN_INVALID")
            else:
                try:
                    principal = await self.verify(token.strip())
                except errors.ApiError:
                    # Public methods work for anyone: a stale token must not lock a caller out of Login.
                    if access != access_pb2.ACCESS_PUBLIC:
                        raise
        if principal is None and access != access_pb2.ACCESS_PUBLIC:
            raise errors.unauthenticated("this method needs 'authorization: Bearer <access token>'", "TOKEN_MISSING")
        return principal

    async def verify(self, token: str) -> Principal:
        kept = self._verified.get(token)
        if kept is not None and kept[1]["exp"] + LEEWAY_SECONDS > time.time() and await self._keys.key(kept[0]):
            claims = kept[1]  # its signature checked before, its key still trusted, not expired
        else:
            claims = await self._decode(token)
        if await self._revocations.is_revoked(claims["sid"]):
            raise errors.unauthenticated("session revoked", "SESSION_REVOKED")
        amr = claims.get("amr")
        return Principal(user_id=claims["sub"], role=claims.get("role", "user"), session_id=claims["sid"],
                         amr=tuple(str(a) for a in amr) if isinstance(amr, list) else ())

    async def _decode(self, token: str) -> dict:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise errors.unauthenticated("malformed access token", "TOKEN_INVALID") from None
        if header.get("alg") != "ES256":
            raise errors.unauthenticated("unsupported token algorithm", "TOKEN_INVALID")
        kid = str(header.get("kid", ""))
        key = await self._keys.key(kid)
        if key is None:
            raise errors.unauthenticated("access token signed by an unknown key", "TOKEN_INVALID")
        try:
            claims = jwt.decode(token, key, algorithms=["ES256"], issuer=self._issuer, leeway=LEEWAY_SECONDS,
                                options={"require": ["exp", "iat", "sub", "sid", "iss"]})
        except jwt.ExpiredSignatureError:
            raise errors.unauthenticated("access token expired", "TOKEN_EXPIRED") from None
        except jwt.PyJWTError:
            raise errors.unauthenticated("invalid access token", "TOKEN_INVALID") from None
        # Kept: the calls of one token (a client's chat sends) check its ECDSA signature once, not each.
        if len(self._verified) >= VERIFIED_KEPT:
            self._verified.clear()
        self._verified[token] = (kid, claims)
        return claims
