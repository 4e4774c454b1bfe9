"""The few HTML pages people reach from outside an app: the link in the verification email.
Opening the link shows a button; only pressing it (a POST) uses the single-use token, so mail
scanners that fetch links cannot spend it."""
from __future__ import annotations

import asyncio
import html
import logging
import urllib.parse

from aiohttp import web
import grpc

from gateway.policy import EdgePolicy
from gateway.request_keys import BODY_ABANDONED, CLIENT_IP
from gateway.transcode import HTTP_STATUS
from gateway.upstream import status_of
from mesh import errors
from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc
from petplatform.common.v1 import access_pb2

PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
_STYLE = "body{font-family:sans-serif;max-width:32em;margin:4em auto;line-height:1.5}button{font-size:1.1em}"
_TOKEN_MAX = 200
_FORM_MAX = 4096
log = logging.getLogger(__name__)

AUTH_SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name


def page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>",
        content_type="text/html", status=status,
        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


class VerifyEmailPage:
    def __init__(self, channel_for, policy: EdgePolicy):
        self.channel_for = channel_for
        self.policy = policy

    async def admit(self, request: web.Request) -> None:
        """IP lists and the rate limit, as for any public call."""
        ip = self.policy.client_ip(request.remote, request.headers.getall("X-Forwarded-For", []))
        request[CLIENT_IP] = ip
        await self.policy.admit(ip, None, access_pb2.ACCESS_PUBLIC)

    async def show(self, request: web.Request) -> web.Response:
        return await self._as_page(self._show, request)

    async def confirm(self, request: web.Request) -> web.Response:
        return await self._as_page(self._confirm, request)

    async def _as_page(self, handler, request: web.Request) -> web.Response:
        """A person is reading: failures are pages too, not JSON. The token is only spent on success,
        so 'try again' is always safe."""
        try:
            return await handler(request)
        except errors.ApiError as e:  # the edge policy: rate limit or IP lists
            if e.code != grpc.StatusCode.RESOURCE_EXHAUSTED:
                return page("Not allowed", f"<p>{html.escape(e.message)}.</p>", HTTP_STATUS[e.code])
            response = page("Please wait", f"<p>{html.escape(e.message)}. Try again in a minute.</p>", 429)
            if adm := getattr(e, "admission", None):
                response.headers["Retry-After"] = str(adm.reset_seconds)
            return response
        except grpc.aio.AioRpcError as e:
            log.warning("verify-email page: auth service answered %s", e.code().name)
            return page("Not available right now", "<p>We could not confirm your email just now. Open the link "
                                                  "again in a few minutes.</p>", 503)

    async def _show(self, request: web.Request) -> web.Response:
        await self.admit(request)
        token = request.query.get("token", "")
        if not token or len(token) > _TOKEN_MAX:
            return page("Link not valid", "<p>This verification link is incomplete. Open the whole link from the "
                                          "email, or ask for a new one in the app.</p>", 400)
        return page("Confirm your email", "<p>Press the button to confirm the address you signed up with.</p>"
                    "<form method='post' action='/verify-email'>"
                    f"<input type='hidden' name='token' value='{html.escape(token, quote=True)}'>"
                    "<button type='submit'>Confirm my email</button></form>")

    async def _confirm(self, request: web.Request) -> web.Response:
        await self.admit(request)
        # The form is one short field: read at most a little more than that, however the body is sent.
        try:
            async with asyncio.timeout(self.policy.s.http_body_timeout_seconds):
                body = await request.content.read(_FORM_MAX + 1)
        except TimeoutError:
            request[BODY_ABANDONED] = True
            return page("Link not valid", "<p>This request did not arrive in time. Try again.</p>", 408)
        if len(body) > _FORM_MAX:
            return page("Link not valid", "<p>This request is too large.</p>", 413)
        token = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        if not token or len(token) > _TOKEN_MAX:
            return page("Link not valid", "<p>This verification link is incomplete.</p>", 400)
        try:
            auth = auth_pb2_grpc.AuthServiceStub(self.channel_for(AUTH_SERVICE))
            reply = await auth.VerifyEmail(
                auth_pb2.VerifyEmailRequest(token=token), timeout=10)
        except grpc.aio.AioRpcError as e:
            if e.code() not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
                raise
            return page("Link not valid", f"<p>{html.escape(status_of(e).message)}.</p>", 400)
        return page("Email confirmed", f"<p>Thank you: {html.escape(reply.account.email)} is confirmed. "
                                       "You can close this page.</p>")
