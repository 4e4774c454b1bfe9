"""Sign-in with a provider through the edge: the web's authorization-code flow with PKCE and state
(/v1/auth/oauth/{provider}/start and its callback) against the demo provider the edge serves itself
(PETPLATFORM_DEV_OIDC, as `make up` runs), and ID tokens over REST."""
from __future__ import annotations

import html
import re
import socket
import urllib.parse

import aiohttp
import pytest

from app import wiring
from tests.support.platform import Api, embedded_settings, start_platform


def browser() -> aiohttp.ClientSession:
    """A client that keeps cookies as a browser does (aiohttp's jar refuses them from IP addresses by default)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
async def demo_edge(tmp_path_factory, smtp_sink):
    """Platform and edge with the demo provider, the edge on a known port (the provider's issuer is on it)."""
    port = free_port()
    platform = await start_platform(embedded_settings(
        tmp_path_factory.mktemp("oauth"), smtp_sink, dev_oidc=True, public_url=f"http://127.0.0.1:{port}"))
    edge = wiring.edge(platform.rt)
    await edge.start(http_port=port, grpc_port=0)
    api = Api(platform, smtp_sink)
    yield f"http://127.0.0.1:{port}", edge
    await api.channel.close()
    await edge.stop(grace=1)
    await platform.stop(grace=1)


async def authorize(http: aiohttp.ClientSession, base: str, email: str, name: str = "Dee Demo") -> str:
    """Starts the flow and signs in at the demo provider as a person would: the callback URL it sends back."""
    async with http.get(f"{base}/v1/auth/oauth/demo/start", allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        to_provider = r.headers["Location"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(to_provider).query)
    assert query["code_challenge_method"] == ["S256"] and query["state"] and query["nonce"]
    async with http.get(to_provider) as r:
        page = await r.text()
    fields = {k: html.unescape(v) for k, v in re.findall(r"name='(\w+)' value='([^']*)'", page)}
    fields.update(email=email, name=name, email_verified="true")
    async with http.post(to_provider.split("?")[0], data=fields, allow_redirects=False) as r:
        assert r.status == 302
        return r.headers["Location"]


async def test_web_sign_in_with_the_demo_provider(demo_edge):
    base, _ = demo_edge
    async with browser() as http:
        callback = await authorize(http, base, "dee@example.com")
        async with http.get(callback, headers={"User-Agent": "DemoBrowser/1.0"}) as r:
            first = await r.json()
            assert r.status == 200, first
        assert first["accountCreated"] and first["account"]["email"] == "dee@example.com"
        assert first["account"]["emailVerified"] and first["accessToken"]
        # The callback is single use.
        async with http.get(callback) as r:
            assert r.status == 401 and (await r.json())["details"][0]["reason"] == "OAUTH_STATE_INVALID"
        # The same person again: the same account.
        async with http.get(await authorize(http, base, "dee@example.com")) as r:
            again = await r.json()
        assert not again.get("accountCreated") and again["account"]["name"] == first["account"]["name"]
        # Their sessions over REST, the device as the browser named itself.
        async with http.get(f"{base}/v1/{first['account']['name']}/sessions",
                            headers={"Authorization": f"Bearer {again['accessToken']}"}) as r:
            sessions = (await r.json())["sessions"]
        assert len(sessions) == 2 and sessions[1]["userAgent"] == "DemoBrowser/1.0"
        assert sessions[1]["signInMethod"] == "provider:demo" and sessions[1]["platform"] == "CLIENT_PLATFORM_WEB"


async def test_a_callback_this_browser_did_not_start_is_refused(demo_edge):
    base, _ = demo_edge
    async with browser() as victim, browser() as attacker:
        # Login CSRF: the attacker's own callback URL, opened in the victim's browser.
        callback = await authorize(attacker, base, "mallory@example.com")
        async with victim.get(callback) as r:
            assert r.status == 401 and (await r.json())["details"][0]["reason"] == "OAUTH_STATE_INVALID"
        async with attacker.get(f"{base}/v1/auth/oauth/demo/callback?error=access_denied&state=x") as r:
            assert r.status == 401 and (await r.json())["details"][0]["reason"] == "PROVIDER_REFUSED"
        async with attacker.get(f"{base}/v1/auth/oauth/nowhere/start", allow_redirects=False) as r:
            assert r.status == 400 and (await r.json())["details"][0]["reason"] == "PROVIDER_UNKNOWN"


async def test_id_tokens_over_rest(demo_edge):
    base, edge = demo_edge
    idp = edge.dev_oidc
    claims = {"aud": "petplatform-demo", "sub": "rest-person", "email": "rest@example.com", "email_verified": True,
              "nonce": "n-1"}
    async with aiohttp.ClientSession() as http:
        url = f"{base}/v1/auth/providers/demo/sign-in"
        body = {"idToken": idp.mint(claims), "nonce": "n-1", "platform": "CLIENT_PLATFORM_IOS"}
        async with http.post(url, json=body) as r:
            ok = await r.json()
            assert r.status == 200 and ok["accountCreated"], ok
        for bad, reason in ((idp.mint({**claims, "exp": 1_600_000_000, "iat": 1_599_999_000}), "ID_TOKEN_EXPIRED"),
                            (idp.mint({**claims, "aud": "another-app"}), "ID_TOKEN_WRONG_AUDIENCE"),
                            (idp.mint(claims, key=idp.add_key()[0], kid=idp.kids["RS256"]), "ID_TOKEN_INVALID")):
            async with http.post(url, json={**body, "idToken": bad}) as r:
                assert r.status == 401 and (await r.json())["details"][0]["reason"] == reason
