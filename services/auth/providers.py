"""Identity provider adapters: each verifies an ID token as its provider documents (signature against the
provider's published keys, fetched and cached, refetched on an unknown key id; issuer; audience = our client
id for the platform; expiry; nonce) and reads the identity from it. The authorization-code flow's exchange
(the edge's web sign-in) is here too, so client secrets stay in the auth service.

Any failure is UNAUTHENTICATED with a reason; a provider that cannot be reached is UNAVAILABLE."""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
from typing import Any

import aiohttp
import grpc
import jwt

from mesh import errors
from mesh.config import Settings
from mesh.oauth import ProviderSettings, providers
from mesh.principal import KeySet

PLATFORMS = {0: None, 1: "web", 2: "ios", 3: "android"}  # ClientPlatform -> OAuthProvider.client_ids key
LEEWAY_SECONDS = 30  # clock skew between us and the provider


@dataclasses.dataclass(frozen=True, kw_only=True)
class Identity:
    provider: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    expire_time: dt.datetime


def refused(message: str, reason: str) -> errors.ApiError:
    return errors.unauthenticated(message, reason)


def unavailable(provider: str) -> errors.ApiError:
    return errors.ApiError(grpc.StatusCode.UNAVAILABLE, f"{provider} cannot be reached; try again later",
                           "PROVIDER_UNAVAILABLE", metadata={"provider": provider})


def _true(value: Any) -> bool:
    """Apple sends booleans as strings ("true"), others as JSON booleans."""
    return value is True or value == "true"


class Provider:
    """An OpenID Connect provider: RS256/ES256 ID tokens signed with the keys at its JWKS URI."""

    algorithms: tuple[str, ...] = ("RS256", "ES256")

    def __init__(self, p: ProviderSettings, settings: Settings, http: HttpClient):
        self.name = p.name
        self.endpoints = p.endpoints
        self.config = p.config
        self.http = http
        self.keys = KeySet(self._jwks, ttl=settings.jwks_cache_seconds, min_refetch=settings.jwks_min_refetch_seconds)

    async def _jwks(self) -> list[dict]:
        return list((await self.http.get_json(self.name, self.endpoints.jwks_uri)).get("keys", []))

    def audiences(self, platform: int) -> list[str]:
        ids = self.config.client_ids
        key = PLATFORMS.get(platform)
        if key is None:  # a client that did not say: any of ours
            return sorted(set(ids.values()))
        return [ids[key]] if key in ids else []

    async def key_for(self, alg: str, header: dict) -> Any:
        return await self.keys.key(str(header.get("kid", "")))

    async def verify(self, id_token: str, *, nonce: str, platform: int) -> Identity:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise refused("the ID token is not a JWT", "ID_TOKEN_MALFORMED") from None
        alg = str(header.get("alg"))
        if alg not in self.algorithms:
            raise refused(f"{self.name} ID tokens are not signed with {alg}", "ID_TOKEN_INVALID")
        audiences = self.audiences(platform)
        if not audiences:
            raise refused(f"{self.name} sign-in is not set up for this platform", "PROVIDER_NOT_CONFIGURED")
        key = await self.key_for(alg, header)
        if key is None:
            raise refused(f"the ID token is signed with a key {self.name} does not publish", "ID_TOKEN_UNKNOWN_KEY")
        try:
            claims = jwt.decode(id_token, key, algorithms=[alg], audience=audiences,
                                issuer=list(self.endpoints.issuers), leeway=LEEWAY_SECONDS,
                                options={"require": ["iss", "sub", "aud", "exp", "iat"]})
        except jwt.ExpiredSignatureError:
            raise refused("the ID token has expired", "ID_TOKEN_EXPIRED") from None
        except jwt.InvalidAudienceError:
            raise refused("the ID token is not addressed to this app", "ID_TOKEN_WRONG_AUDIENCE") from None
        except jwt.InvalidIssuerError:
            raise refused(f"the ID token was not issued by {self.name}", "ID_TOKEN_WRONG_ISSUER") from None
        except (jwt.ImmatureSignatureError, jwt.InvalidIssuedAtError):
            raise refused("the ID token is not valid yet", "ID_TOKEN_INVALID") from None
        except jwt.PyJWTError as e:
            raise refused(f"the ID token is not valid: {e}", "ID_TOKEN_INVALID") from None
        self.check_nonce(claims, nonce)
        self.check(claims, platform)
        return self.identity(claims)

    def check_nonce(self, claims: dict, nonce: str) -> None:
        """The token must carry the nonce of the request that obtained it: raw, or as its SHA-256 (what the
        iOS and Android SDKs are given to put in the request)."""
        if not nonce:
            raise refused("a nonce is required", "NONCE_MISSING")
        got = str(claims.get("nonce", ""))
        hashed = hashlib.sha256(nonce.encode()).hexdigest()
        if not (hmac.compare_digest(got, nonce) or hmac.compare_digest(got, hashed)):
            raise refused("the ID token was not issued for this nonce", "ID_TOKEN_NONCE_MISMATCH")

    def check(self, claims: dict, platform: int) -> None:
        """Provider-specific rules beyond OpenID Connect's."""

    def identity(self, claims: dict) -> Identity:
        email = claims.get("email")
        return Identity(provider=self.name, subject=str(claims["sub"]), email=str(email) if email else None,
                        email_verified=bool(email) and _true(claims.get("email_verified")),
                        name=str(claims["name"]) if claims.get("name") else None,
                        expire_time=dt.datetime.fromtimestamp(int(claims["exp"]), dt.timezone.utc))

    # --- the authorization-code flow (web) ---

    def client_secret(self) -> str | None:
        return self.config.client_secret.get_secret_value() if self.config.client_secret else None

    async def exchange(self, *, code: str, code_verifier: str, redirect_uri: str) -> str:
        """The ID token for an authorization code (RFC 6749 4.1.3 with PKCE)."""
        client_id = self.config.client_ids.get("web")
        if not client_id:
            raise refused(f"{self.name} web sign-in is not set up", "PROVIDER_NOT_CONFIGURED")
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "client_id": client_id, "code_verifier": code_verifier}
        if secret := self.client_secret():
            form["client_secret"] = secret
        status, body = await self.http.post_form(self.name, self.endpoints.token_endpoint, form)
        if status >= 500:
            raise unavailable(self.name)
        if status != 200 or not isinstance(body.get("id_token"), str):
            raise refused(f"{self.name} did not accept the authorization code ({body.get('error', status)})",
                          "AUTHORIZATION_CODE_INVALID")
        return str(body["id_token"])


class Google(Provider):
    """Google: RS256 keys at its certs URI; `iss` either spelling; `email_verified` a boolean. On Android the
    token's `aud` is the server's (web) client id and `azp` the app's: either of ours is accepted there."""

    algorithms = ("RS256",)

    def audiences(self, platform: int) -> list[str]:
        own = super().audiences(platform)
        if PLATFORMS.get(platform) == "android" and "web" in self.config.client_ids:
            own = sorted({*own, self.config.client_ids["web"]})
        return own

    def check(self, claims: dict, platform: int) -> None:
        azp = claims.get("azp")
        if azp is not None and azp not in self.config.client_ids.values():
            raise refused("the ID token was issued to another app", "ID_TOKEN_WRONG_AUDIENCE")


class Apple(Provider):
    """Sign in with Apple: RS256; `aud` the app's bundle id (iOS) or the Services id (web); booleans as
    strings; the email may be a private relay address (`is_private_email`), which is still the person's
    verified address; the name is never in the token (the app gets it once, at the first sign-in, and passes
    it as display_name). The web client's secret is a short-lived ES256 JWT signed with the team's key."""

    algorithms = ("RS256",)

    def client_secret(self) -> str | None:
        c = self.config
        if not (c.team_id and c.key_id and c.private_key):
            return super().client_secret()
        now = dt.datetime.now(dt.timezone.utc)
        return jwt.encode({"iss": c.team_id, "iat": now, "exp": now + dt.timedelta(minutes=5),
                           "aud": "https://appleid.apple.com", "sub": c.client_ids.get("web", "")},
                          c.private_key.get_secret_value(), algorithm="ES256", headers={"kid": c.key_id})

    def identity(self, claims: dict) -> Identity:
        return dataclasses.replace(super().identity(claims), name=None)


class Line(Provider):
    """LINE Login: the native SDKs and LIFF get ES256 tokens (keys at its certs URI); web login gets HS256
    tokens signed with the channel secret. `aud` is the channel id. LINE asserts nothing about the email
    (there is no `email_verified`), so it is taken as unverified."""

    algorithms = ("ES256", "HS256")

    async def key_for(self, alg: str, header: dict) -> Any:
        if alg == "HS256":
            secret = self.client_secret()
            return secret.encode() if secret else None
        return await super().key_for(alg, header)

    def identity(self, claims: dict) -> Identity:
        return dataclasses.replace(super().identity(claims), email_verified=False)


ADAPTERS: dict[str, type[Provider]] = {"google": Google, "apple": Apple, "line": Line, "demo": Provider}


class HttpClient:
    """JSON over HTTP to providers, with a deadline; a provider that does not answer is UNAVAILABLE."""

    TIMEOUT = aiohttp.ClientTimeout(total=10)

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.TIMEOUT)
        return self._session

    async def get_json(self, provider: str, url: str) -> dict:
        try:
            async with self._http().get(url) as r:
                if r.status != 200:
                    raise unavailable(provider)
                return dict(await r.json(content_type=None))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            raise unavailable(provider) from None

    async def post_form(self, provider: str, url: str, form: dict[str, str]) -> tuple[int, dict]:
        try:
            async with self._http().post(url, data=form, headers={"Accept": "application/json"}) as r:
                try:
                    body = await r.json(content_type=None)
                except ValueError:
                    body = {}
                return r.status, body if isinstance(body, dict) else {}
        except (aiohttp.ClientError, TimeoutError):
            raise unavailable(provider) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class Providers:
    """The deployment's providers, by name."""

    def __init__(self, settings: Settings):
        self.http = HttpClient()
        self._by_name = {name: ADAPTERS[name](p, settings, self.http) for name, p in providers(settings).items()}

    def get(self, name: str) -> Provider:
        provider = self._by_name.get(name)
        if provider is None:
            offered = ", ".join(sorted(self._by_name)) or "none"
            raise errors.invalid_argument(("provider", f"unknown provider; this deployment offers: {offered}"),
                                          reason="PROVIDER_UNKNOWN")
        return provider
