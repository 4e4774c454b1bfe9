"""A local OpenID provider for development, the demo and tests: its own signing keys (RS256 as Google and
Apple sign, ES256 as LINE's apps get), a discovery document, a JWKS, an authorization page where anyone
signs in as whoever they type, and a token endpoint (authorization code with PKCE). The edge serves it
under /dev-oidc when PETPLATFORM_DEV_OIDC is on (never in the real profile); tests run it on a port of
its own and mint ID tokens with any claims to check each provider's rules."""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import html
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.typedefs import Handler
from cryptography.hazmat.primitives.asymmetric import ec, rsa
import jwt

CODE_SECONDS = 120
TOKEN_SECONDS = 600


def _kid(public_jwk: dict) -> str:
    return hashlib.sha256(repr(sorted(public_jwk.items())).encode()).hexdigest()[:16]


@dataclasses.dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    claims: dict[str, Any]
    expires: float


class LocalOpenIdProvider:
    def __init__(self, issuer: str = ""):
        self.issuer = issuer.rstrip("/")
        self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec_key = ec.generate_private_key(ec.SECP256R1())
        self._jwks = []
        self.kids: dict[str, str] = {}
        for alg, key in (("RS256", self.rsa_key), ("ES256", self.ec_key)):
            jwk = jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key(), as_dict=True)
            kid = _kid(jwk)
            self.kids[alg] = kid
            self._jwks.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        self._grants: dict[str, _Grant] = {}
        self._runner: web.AppRunner | None = None

    # --- minting (tests) ---

    def add_key(self) -> tuple[Any, str]:
        """A new RS256 key, published from now on (a provider's key rotation): (the key, its kid)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = jwt.algorithms.get_default_algorithms()["RS256"].to_jwk(key.public_key(), as_dict=True)
        kid = _kid(jwk)
        self._jwks.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return key, kid

    def jwks(self) -> dict:
        return {"keys": list(self._jwks)}

    def mint(self, claims: dict[str, Any], *, alg: str = "RS256", kid: str | None = None, key: Any = None) -> str:
        """An ID token with these claims over sensible defaults (issuer, issued now, valid ten minutes), signed
        with this provider's key for `alg`, or with `key` (an HS256 secret, or a stranger's key)."""
        now = int(time.time())
        body = {"iss": self.issuer, "iat": now, "exp": now + TOKEN_SECONDS, **claims}
        body = {k: v for k, v in body.items() if v is not None}  # None removes a default
        if key is None:
            key = {"RS256": self.rsa_key, "ES256": self.ec_key}[alg]
        headers = {} if alg == "HS256" else {"kid": kid or self.kids.get(alg, "unknown")}
        return jwt.encode(body, key, algorithm=alg, headers=headers)

    # --- HTTP ---

    def routes(self, prefix: str = "") -> list[tuple[str, str, Handler]]:
        return [("GET", f"{prefix}/.well-known/openid-configuration", self.discovery),
                ("GET", f"{prefix}/jwks", self.serve_jwks),
                ("GET", f"{prefix}/authorize", self.authorize_page),
                ("POST", f"{prefix}/authorize", self.authorize),
                ("POST", f"{prefix}/token", self.token)]

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """On a port of its own (tests): the issuer becomes http://host:port."""
        app = web.Application()
        for method, path, handler in self.routes():
            app.router.add_route(method, path, handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.issuer = f"http://{host}:{bound}"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def discovery(self, request: web.Request) -> web.Response:
        i = self.issuer
        return web.json_response({
            "issuer": i, "authorization_endpoint": f"{i}/authorize", "token_endpoint": f"{i}/token",
            "jwks_uri": f"{i}/jwks", "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"], "scopes_supported": ["openid", "email",
                                                                                             "profile"],
            "code_challenge_methods_supported": ["S256"], "token_endpoint_auth_methods_supported": ["none"]})

    async def serve_jwks(self, request: web.Request) -> web.Response:
        return web.json_response(self.jwks())

    _FIELDS = ("client_id", "redirect_uri", "state", "nonce", "code_challenge", "code_challenge_method")

    async def authorize_page(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" or not all(
                q.get(f) for f in self._FIELDS):
            return web.Response(status=400, text="needs response_type=code, client_id, redirect_uri, state, nonce "
                                                 "and an S256 code_challenge")
        hidden = "".join(f"<input type='hidden' name='{f}' value='{html.escape(q[f], quote=True)}'>"
                         for f in self._FIELDS)
        return web.Response(content_type="text/html", text=(
            "<!doctype html><html><head><meta charset='utf-8'><title>Local sign-in</title></head><body>"
            "<h1>Local OpenID provider</h1><p>Development only: sign in as anyone.</p>"
            f"<form method='post'>{hidden}<label>Email <input name='email' value='demo@example.com'></label> "
            "<label>Name <input name='name' value='Demo Person'></label> "
            "<label><input type='checkbox' name='email_verified' value='true' checked> email verified</label> "
            "<button type='submit'>Sign in</button></form></body></html>"))

    async def authorize(self, request: web.Request) -> web.Response:
        form = await request.post()
        values = {f: str(form.get(f, "")) for f in (*self._FIELDS, "email", "name", "email_verified")}
        if not all(values[f] for f in (*self._FIELDS, "email")):
            return web.Response(status=400, text="incomplete sign-in form")
        code = secrets.token_urlsafe(24)
        email = values["email"].strip().lower()
        self._grants[code] = _Grant(
            client_id=values["client_id"], redirect_uri=values["redirect_uri"],
            code_challenge=values["code_challenge"], expires=time.monotonic() + CODE_SECONDS, claims={
                "sub": hashlib.sha256(email.encode()).hexdigest()[:24], "email": email,
                "email_verified": values["email_verified"] == "true", "name": values["name"] or None,
                "nonce": values["nonce"], "aud": values["client_id"]})
        sep = "&" if "?" in values["redirect_uri"] else "?"
        location = f"{values['redirect_uri']}{sep}{urlencode({'code': code, 'state': values['state']})}"
        return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = self._grants.pop(str(form.get("code", "")), None)  # single use
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if (grant is None or grant.expires < time.monotonic() or form.get("grant_type") != "authorization_code"
                or form.get("client_id") != grant.client_id or form.get("redirect_uri") != grant.redirect_uri
                or not secrets.compare_digest(challenge, grant.code_challenge)):
            return web.json_response({"error": "invalid_grant"}, status=400)
        id_token = self.mint(grant.claims)
        return web.json_response({"id_token": id_token, "access_token": secrets.token_urlsafe(24),
                                  "token_type": "Bearer", "expires_in": TOKEN_SECONDS,
                                  "issued_at": dt.datetime.now(dt.timezone.utc).isoformat()})
