"""AdminService through the edge: REST/JSON (a report, the queue, a decision, the dashboard) and
gRPC-Web (the audit log), with staff access enforced there as on the services port."""
from __future__ import annotations

import datetime as dt

import grpc
import pytest
import sonora.protocol

from petplatform.admin.v1 import admin_pb2 as a
from petplatform.admin.v1 import admin_pb2_grpc
from tests.e2e.admin.conftest import OPTIONS, staffed
from tests.e2e.admin.test_moderation import _known
from tests.support.matching import until
from tests.support.platform import Api, EdgeClient, embedded_settings, start_edge, start_platform
from tests.support.web import WebChannel


@pytest.fixture(scope="module")
async def admin_edge(tmp_path_factory, smtp_sink):
    import aiohttp
    tmp = tmp_path_factory.mktemp("data")
    platform = await start_platform(embedded_settings(tmp, smtp_sink, **OPTIONS))
    e = await start_edge(platform)
    api = await staffed(Api(platform, smtp_sink), tmp)
    async with aiohttp.ClientSession() as http:
        yield EdgeClient(api, e, http)
    await api.fraud.close()
    await api.channel.close()
    await e.stop(grace=1)
    await platform.stop(grace=1)


def bearer(session) -> dict[str, str]:
    return {"Authorization": f"Bearer {session.access_token}"}


async def test_report_queue_and_decision_over_rest(admin_edge: EdgeClient):
    edge, api = admin_edge, admin_edge.api
    reporter, reported = await api.signup("Rest Reporter"), await api.signup("Rest Reported")
    await until(lambda: _known(api, reported.name), what="the account known to admin")
    body = {"subject": reported.name, "reason": "REPORT_REASON_HARASSMENT", "details": "rude messages"}
    async with edge.http.post(f"{edge.url}/v1/reports", json=body, headers=bearer(reporter)) as r:
        assert r.status == 200, await r.text()
        made = await r.json()
    assert made["name"].startswith("reports/") and made["reason"] == "REPORT_REASON_HARASSMENT"
    async with edge.http.get(f"{edge.url}/v1/cases", headers=bearer(reported)) as r:
        assert r.status == 403
        assert (await r.json())["details"][0]["reason"] == "MODERATORS_ONLY"
    async with edge.http.get(f"{edge.url}/v1/cases?pageSize=100", headers=bearer(api.moderator)) as r:
        assert r.status == 200
        case = next(c for c in (await r.json())["cases"] if c["subject"] == reported.name)
    async with edge.http.get(f"{edge.url}/v1/{case['name']}", headers=bearer(api.moderator)) as r:
        full = await r.json()
    assert [x["reporter"] for x in full["reports"]] == [reporter.name]
    async with edge.http.post(f"{edge.url}/v1/{case['name']}:resolve", headers=bearer(api.moderator),
                              json={"action": "ACTION_WARN", "reason": "be kind"}) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["state"] == "STATE_RESOLVED"
    today = dt.datetime.now(dt.timezone.utc).date()
    q = f"startDate.year={today.year}&startDate.month={today.month}&startDate.day={today.day}"
    async with edge.http.get(f"{edge.url}/v1/dashboard?{q}&endDate.year={today.year}&endDate.month={today.month}"
                             f"&endDate.day={today.day}", headers=bearer(api.support)) as r:
        assert r.status == 200, await r.text()
        assert int((await r.json())["total"]["reports"]) >= 1
    async with edge.http.get(f"{edge.url}/v1/dashboard?{q}", headers=bearer(api.support)) as r:
        assert r.status == 400


async def test_the_audit_log_over_grpc_web(admin_edge: EdgeClient):
    edge, api = admin_edge, admin_edge.api
    async with WebChannel(edge.url) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        await stub.SearchUserRecords(a.SearchUserRecordsRequest(query="example"),
                                     metadata=list(api.support.md))
        entries = (await stub.ListAuditEntries(a.ListAuditEntriesRequest(),
                                               metadata=list(api.admin_session.md))).audit_entries
        assert entries[0].action == "SearchUserRecords" and entries[0].actor == api.support.name
        verdict = await stub.VerifyAuditLog(a.VerifyAuditLogRequest(), metadata=list(api.admin_session.md))
        assert verdict.intact and verdict.entries_checked == len(entries)
        with pytest.raises(sonora.protocol.WebRpcError) as e:
            await stub.VerifyAuditLog(a.VerifyAuditLogRequest(), metadata=list(api.moderator.md))
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
