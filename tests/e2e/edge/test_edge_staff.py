"""Staff RPCs over REST through the edge: an admin suspends an account (its REST calls stop at once), support
reads it; plain users are refused."""
from __future__ import annotations

import aiohttp
import pytest

from tests.support.platform import PASSWORD, Api, EdgeClient, embedded_settings, start_edge, start_platform
from tests.support.web import call, signup

ADMIN = "edge-admin@staff.example.com"


@pytest.fixture(scope="module")
async def edge(tmp_path_factory, smtp_sink):
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink,
                                                      admin_emails=[ADMIN]))
    e = await start_edge(platform)
    api = Api(platform, smtp_sink)
    async with aiohttp.ClientSession() as http:
        yield EdgeClient(api, e, http)
    await api.channel.close()
    await e.stop(grace=1)
    await platform.stop(grace=1)


async def test_an_admin_suspends_and_reads_an_account_over_rest(edge: EdgeClient):
    admin = await edge.api.signup_admin(ADMIN)
    user, token = await signup(edge, "Rest Seller")
    other, other_token = await signup(edge, "Rest Bystander")
    status, err, _ = await call(edge, "POST", f"/v1/auth/{user}:setStatus",
                                {"status": "ACCOUNT_STATUS_SUSPENDED", "reason": "scam"}, other_token)
    assert status == 403 and err["details"][0]["reason"] == "MODERATORS_ONLY"
    status, account, _ = await call(edge, "POST", f"/v1/auth/{user}:setStatus",
                                    {"status": "ACCOUNT_STATUS_SUSPENDED", "reason": "fake puppy ads"},
                                    admin.access_token)
    assert status == 200 and (account["name"], account["status"], account["statusReason"]) == (
        user, "ACCOUNT_STATUS_SUSPENDED", "fake puppy ads")  # response_body: the account
    status, err, _ = await call(edge, "GET", f"/v1/{user}/sessions", token=token)
    assert status == 401 and err["details"][0]["reason"] == "SESSION_REVOKED"
    email = (await call(edge, "GET", f"/v1/auth/{user}", token=admin.access_token))[1]["email"]
    status, err, _ = await call(edge, "POST", "/v1/auth/login", {"email": email, "password": PASSWORD})
    assert status == 403 and err["details"][0]["reason"] == "ACCOUNT_SUSPENDED"
    status, found, _ = await call(edge, "GET", "/v1/auth/accounts", token=admin.access_token,
                                  status="ACCOUNT_STATUS_SUSPENDED")
    assert status == 200 and [a["name"] for a in found["accounts"]] == [user]
    status, sessions, _ = await call(edge, "GET", f"/v1/{other}/sessions", token=admin.access_token)
    assert status == 200 and len(sessions["sessions"]) == 1
    status, err, _ = await call(edge, "POST", f"/v1/auth/{other}:setRole", {"role": "ROLE_ADMIN"}, other_token)
    assert status == 403 and err["details"][0]["reason"] == "ADMIN_ONLY"
    status, err, _ = await call(edge, "GET", f"/v1/auth/{user}", token=other_token)
    assert status == 403 and err["details"][0]["reason"] == "STAFF_ONLY"
