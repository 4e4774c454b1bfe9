"""The web's sign-in with a provider: the authorization-code flow with PKCE (RFC 7636), state and nonce.

GET /v1/auth/oauth/{provider}/start sends the browser to the provider with a fresh state, nonce and code
challenge; the state is kept (the cache, ten minutes, single use) and bound to the browser by a cookie, so a
callback that this browser did not start (login CSRF) is refused. The callback
(/v1/auth/oauth/{provider}/callback, GET, or POST for Apple's form_post) ends in AuthService.SignInWithProvider
with the code and its verifier: the auth service exchanges the code (client secrets stay there) and verifies
the ID token. The answer is SignInWithProvider's, as JSON: tokens, or an MFA challenge."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import urllib.parse

from aiohttp import web
from aiohttp.typedefs import Handler
from google.protobuf import json_format
import grpc

from gateway.policy import EdgePolicy
from gateway.request_keys import CLIENT_IP
from gateway.rest import error_response
from gateway.upstream import status_of
from mesh import client_address, errors, oauth
from mesh.cache import Cache
from mesh.config import Settings
from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc
from petplatform.common.v1 import access_pb2

AUTH_SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
STATE_SECONDS = 600
COOKIE = "petplatform_oauth"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class OAuthFlow:
    def __init__(self, settings: Settings, cache: Cache, policy: EdgePolicy, channel_for):
        self.s = settings
        self.cache = cache
        self.policy = policy
        self.channel_for = channel_for

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("GET", "/v1/auth/oauth/{provider}/start", self.start),
                ("GET", "/v1/auth/oauth/{provider}/callback", self.callback),
                ("POST", "/v1/auth/oauth/{provider}/callback", self.callback)]

    def redirect_uri(self, provider: str) -> str:
        return f"{self.s.public_url.rstrip('/')}/v1/auth/oauth/{provider}/callback"

    async def _admit(self, request: web.Request) -> str:
        ip = self.policy.client_ip(request.remote, request.headers.getall("X-Forwarded-For", []))
        request[CLIENT_IP] = ip
        await self.policy.admit(ip, None, access_pb2.ACCESS_PUBLIC)
        return ip

    async def start(self, request: web.Request) -> web.StreamResponse:
        try:
            await self._admit(request)
        except errors.ApiError as refusal:
            return error_response(refusal.to_status(),
                                  getattr(getattr(refusal, "admission", None), "headers", dict)())
        name = request.match_info["provider"]
        provider = oauth.providers(self.s).get(name)
        client_id = provider.config.client_ids.get("web") if provider else None
        if provider is None or not client_id:
            return error_response(errors.invalid_argument(
                ("provider", f"{name!r} web sign-in is not offered here"), reason="PROVIDER_UNKNOWN").to_status())
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        await self.cache.set(f"oauth-state:{hashlib.sha256(state.encode()).hexdigest()}", json.dumps(
            {"provider": name, "nonce": nonce, "verifier": verifier}).encode(), ttl_seconds=STATE_SECONDS)
        e = provider.endpoints
        query = {"response_type": "code", "client_id": client_id, "redirect_uri": self.redirect_uri(name),
                 "scope": e.scope, "state": state, "nonce": nonce,
                 "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()), "code_challenge_method": "S256"}
        if e.form_post:
            query["response_mode"] = "form_post"
        response = web.Response(status=302,
                                headers={"Location": f"{e.authorization_endpoint}?{urllib.parse.urlencode(query)}"})
        secure = self.s.public_url.startswith("https://")
        # Apple answers with a cross-site POST, which carries only SameSite=None cookies (and those need https).
        response.set_cookie(COOKIE, state, max_age=STATE_SECONDS, path="/v1/auth/oauth/", httponly=True,
                            secure=secure, samesite="None" if secure and e.form_post else "Lax")
        response.headers["Cache-Control"] = "no-store"
        return response

    async def callback(self, request: web.Request) -> web.StreamResponse:
        try:
            ip = await self._admit(request)
        except errors.ApiError as refusal:
            return error_response(refusal.to_status(),
                                  getattr(getattr(refusal, "admission", None), "headers", dict)())
        name = request.match_info["provider"]
        params = dict(request.query)
        if request.method == "POST":
            form = await request.post()
            params.update({k: str(v) for k, v in form.items() if isinstance(v, str)})
        state = params.get("state", "")
        if params.get("error"):
            return self._refused(f"the provider refused the sign-in: {params['error'][:100]}", "PROVIDER_REFUSED")
        cookie = request.cookies.get(COOKIE, "")
        if not state or not hmac.compare_digest(cookie.encode(), state.encode()):
            return self._refused("this sign-in was not started from this browser", "OAUTH_STATE_INVALID")
        key = f"oauth-state:{hashlib.sha256(state.encode()).hexdigest()}"
        raw = await self.cache.get(key)
        claimed, _ = await self.cache.incr(f"{key}:used", STATE_SECONDS)
        if raw is None or claimed != 1:
            return self._refused("this sign-in expired or was already completed; start again", "OAUTH_STATE_INVALID")
        await self.cache.delete(key)
        pending = json.loads(raw)
        if pending["provider"] != name or not params.get("code"):
            return self._refused("the provider's answer does not match this sign-in", "OAUTH_STATE_INVALID")
        display_name = ""
        if user := params.get("user"):  # Apple, at the first sign-in only: {"name": {"firstName", "lastName"}}
            try:
                n = json.loads(user).get("name", {})
                display_name = " ".join(p for p in (n.get("firstName"), n.get("lastName")) if isinstance(p, str))
            except (ValueError, AttributeError):
                pass
        md = client_address.forwarded((("x-user-agent", request.headers.get("User-Agent", "")[:256]),), ip,
                                      self.policy.edge_key)
        try:
            reply = await auth_pb2_grpc.AuthServiceStub(self.channel_for(AUTH_SERVICE)).SignInWithProvider(
                auth_pb2.SignInWithProviderRequest(
                    provider=name, authorization_code=params["code"], code_verifier=pending["verifier"],
                    redirect_uri=self.redirect_uri(name), nonce=pending["nonce"], display_name=display_name[:64],
                    platform=auth_pb2.CLIENT_PLATFORM_WEB), metadata=md, timeout=30)
        except grpc.aio.AioRpcError as e:
            response = error_response(status_of(e))
        else:
            response = web.json_response(json_format.MessageToDict(reply))
        response.del_cookie(COOKIE, path="/v1/auth/oauth/")
        response.headers["Cache-Control"] = "no-store"
        return response

    def _refused(self, message: str, reason: str) -> web.Response:
        return error_response(errors.unauthenticated(message, reason).to_status(),
                              {"Cache-Control": "no-store"})
