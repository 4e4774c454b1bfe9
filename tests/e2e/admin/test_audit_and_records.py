"""The audit log (every staff action and auth's security events, hash-chained; a changed, removed or
truncated entry is found by VerifyAuditLog), the dashboard's daily counts, staff's user records, and
the access levels: a plain user is refused every staff method of the contract."""
from __future__ import annotations

import asyncio
import datetime as dt

from google.protobuf import descriptor_pool
from google.type import date_pb2
import grpc
import sqlalchemy as sa

from petplatform.admin.v1 import admin_pb2 as a
from petplatform.admin.v1 import events_pb2 as ev
from petplatform.auth.v1 import auth_pb2
from services.admin import store
from tests.support.admin import fraud_detected, open_case_of, report_when_known
from tests.support.errors import expect, violations
from tests.support.matching import until
from tests.support.pets import create, dog
from tests.support.platform import Api, module_of

Action = ev.ModerationActionTaken
E = a.AuditEntry
PD, IA = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT


async def all_entries(api: Api) -> list[a.AuditEntry]:
    out, token = [], ""
    while True:
        page = await api.admin.ListAuditEntries(a.ListAuditEntriesRequest(page_size=7, page_token=token),
                                                metadata=api.admin_session.md)
        out += page.audit_entries
        if not (token := page.next_page_token):
            return out


async def verify(api: Api) -> a.VerifyAuditLogResponse:
    return await api.admin.VerifyAuditLog(a.VerifyAuditLogRequest(), metadata=api.admin_session.md)


async def a_resolved_case(api: Api) -> a.Case:
    owner = await api.signup("Listing Owner")
    pet = await create(api, owner, dog("Rex"))
    await report_when_known(api, await api.signup("Worried"), pet.name)
    case = await until(lambda: open_case_of(api, pet.name), what="the case")
    await api.admin.ClaimCase(a.ClaimCaseRequest(name=case.name), metadata=api.moderator.md)
    return (await api.admin.ResolveCase(a.ResolveCaseRequest(
        name=case.name, action=Action.ACTION_HIDE_LISTING, reason="stock photos"), metadata=api.moderator.md)).case


async def test_staff_actions_and_security_events_are_audited_in_a_chain(admin_api: Api):
    api = admin_api
    case = await a_resolved_case(api)
    # Auth's own events: a refused sign-in, a role granted by the admin, a suspension by a moderator.
    victim = await api.signup("Locked Out")
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.Login(auth_pb2.LoginRequest(
        email=victim.email, password="not the password at all")))
    helper = await api.signup("New Helper")
    await api.auth.SetAccountRole(auth_pb2.SetAccountRoleRequest(name=helper.name, role=auth_pb2.ROLE_SUPPORT),
                                  metadata=api.admin_session.md)
    await api.auth.SetAccountStatus(auth_pb2.SetAccountStatusRequest(
        name=victim.name, status=auth_pb2.ACCOUNT_STATUS_SUSPENDED, reason="spam"), metadata=api.moderator.md)

    async def audited():
        entries = await all_entries(api)
        targets = {(e.action, e.target) for e in entries}
        return entries if {("security.event_recorded", victim.name), ("user.role_changed", helper.name),
                           ("user.status_changed", victim.name)} <= targets else None
    entries = await until(audited, what="auth's events in the audit log")
    assert [e.sequence for e in entries] == list(range(len(entries), 0, -1)), "newest first, no gaps"
    by_action = {e.action: e for e in reversed(entries)}  # the newest of each action
    claim, resolve = by_action["ClaimCase"], by_action["ResolveCase"]
    assert (claim.kind, claim.actor, resolve.target) == (E.KIND_STAFF_ACTION, api.moderator.name, case.name)
    assert "action=ACTION_HIDE_LISTING" in resolve.detail and "role=moderator" in resolve.detail
    failed = next(e for e in entries if e.action == "security.event_recorded" and e.target == victim.name)
    assert failed.kind == E.KIND_SECURITY_EVENT and "KIND_SIGN_IN_FAILED" in failed.detail
    assert "not the password" not in failed.detail
    role = next(e for e in entries if e.action == "user.role_changed" and e.target == helper.name)
    assert (role.kind, role.actor) == (E.KIND_ROLE_CHANGED, api.admin_session.name) and "ROLE_SUPPORT" in role.detail
    status = next(e for e in entries if e.action == "user.status_changed" and e.target == victim.name)
    assert status.actor == api.moderator.name and "ACCOUNT_STATUS_SUSPENDED" in status.detail
    assert all(len(e.hash) == 64 for e in entries)
    ok = await verify(api)
    assert ok.intact and ok.entries_checked == len(entries) and not ok.first_bad_entry
    # The staff's view of the accounts follows: the new role, the suspension.
    records = {r.user: r for r in (await api.admin.SearchUserRecords(a.SearchUserRecordsRequest(
        query=victim.email), metadata=api.support.md)).user_records}
    assert records[victim.name].status == auth_pb2.ACCOUNT_STATUS_SUSPENDED
    helper_record = (await api.admin.GetUserRecord(a.GetUserRecordRequest(name=f"userRecords/{helper.user_id}"),
                                                   metadata=api.support.md)).user_record
    assert helper_record.role == auth_pb2.ROLE_SUPPORT


async def test_a_changed_removed_or_truncated_entry_is_found(admin_api: Api):
    api = admin_api
    await a_resolved_case(api)
    assert (await verify(api)).intact
    db = module_of(api, "admin").db
    log = store.audit_log
    async with db.read() as s:
        rows = (await s.execute(sa.select(log).order_by(log.c.sequence))).all()
    middle, last = rows[len(rows) // 2], rows[-1]

    async with db.transaction() as s:  # an edit behind the API's back
        await s.execute(log.update().where(log.c.sequence == middle.sequence).values(detail="nothing happened"))
    bad = await verify(api)
    assert (bad.intact, bad.first_bad_entry) == (False, f"auditEntries/{middle.sequence}"), bad
    assert "changed" in bad.problem
    async with db.transaction() as s:
        await s.execute(log.update().where(log.c.sequence == middle.sequence).values(detail=middle.detail))
    assert (await verify(api)).intact

    async with db.transaction() as s:  # a removal
        await s.execute(log.delete().where(log.c.sequence == middle.sequence))
    bad = await verify(api)
    assert (bad.intact, bad.first_bad_entry) == (False, f"auditEntries/{middle.sequence + 1}"), bad
    assert "missing" in bad.problem
    async with db.transaction() as s:
        await s.execute(log.insert().values(**middle._mapping))
    assert (await verify(api)).intact

    async with db.transaction() as s:  # the newest entry removed: the head row knows there was one
        await s.execute(log.delete().where(log.c.sequence == last.sequence))
    bad = await verify(api)
    assert not bad.intact and bad.first_bad_entry == f"auditEntries/{last.sequence}", bad
    async with db.transaction() as s:
        await s.execute(log.insert().values(**last._mapping))
    assert (await verify(api)).intact


async def test_concurrent_staff_actions_keep_one_chain(admin_api: Api):
    api = admin_api
    before = len(await all_entries(api))
    calls = [api.admin.SearchUserRecords(a.SearchUserRecordsRequest(query=f"user{i}"), metadata=api.support.md)
             for i in range(20)]
    await asyncio.gather(*calls)
    entries = await all_entries(api)
    assert len(entries) >= before + 20
    assert [e.sequence for e in entries] == list(range(len(entries), 0, -1))
    assert (await verify(api)).intact


async def test_the_dashboard_counts_days_from_events(admin_api: Api):
    api = admin_api
    owner = await api.signup("Counted")
    pet = await create(api, owner, dog("Counted Dog"))
    await report_when_known(api, await api.signup("Counting Reporter"), pet.name)
    await api.fraud.emit(fraud_detected(f"users/{owner.user_id}", owner.name, 0.7))
    today = dt.datetime.now(dt.timezone.utc).date()
    span = (date_pb2.Date(year=today.year, month=today.month, day=today.day),)

    async def counted():
        got = await api.admin.GetDashboard(a.GetDashboardRequest(start_date=span[0], end_date=span[0]),
                                           metadata=api.support.md)
        t = got.total
        return got if t.sign_ups >= 2 and t.listings >= 1 and t.reports >= 1 and t.fraud_cases >= 1 else None
    got = await until(counted, what="today's counts")
    assert len(got.days) == 1 and got.days[0].date == span[0] and got.days[0].sign_ups == got.total.sign_ups
    week_ago = today - dt.timedelta(days=6)
    week = await api.admin.GetDashboard(a.GetDashboardRequest(
        start_date=date_pb2.Date(year=week_ago.year, month=week_ago.month, day=week_ago.day), end_date=span[0]),
        metadata=api.admin_session.md)
    assert len(week.days) == 7 and week.days[-1] == got.days[0] and all(d.sign_ups == 0 for d in week.days[:-1])
    for start, end, field in [(date_pb2.Date(year=2026, month=2, day=30), span[0], "start_date"),
                              (span[0], date_pb2.Date(year=2020, month=1, day=1), "end_date"),
                              (date_pb2.Date(year=2020, month=1, day=1), date_pb2.Date(year=2026, month=1, day=1),
                               "end_date")]:
        err = await expect(IA, api.admin.GetDashboard(a.GetDashboardRequest(start_date=start, end_date=end),
                                                      metadata=api.support.md))
        assert field in violations(err)
    await expect(IA, api.admin.GetDashboard(a.GetDashboardRequest(start_date=span[0]), metadata=api.support.md),
                 "MISSING_FIELD")


async def test_staff_find_an_account_and_see_its_reports_and_cases(admin_api: Api):
    api = admin_api
    suspect = await api.signup("Findable Person", "findable.person@example.com")
    reporter = await api.signup("Careful Reporter")
    await report_when_known(api, reporter, suspect.name)
    found = (await api.admin.SearchUserRecords(a.SearchUserRecordsRequest(query="FINDABLE.person"),
                                               metadata=api.support.md)).user_records
    assert [r.user for r in found] == [suspect.name]
    assert (found[0].email, found[0].role, found[0].status) == (
        "findable.person@example.com", auth_pb2.ROLE_USER, auth_pb2.ACCOUNT_STATUS_ACTIVE)
    record = (await api.admin.GetUserRecord(a.GetUserRecordRequest(name=found[0].name),
                                            metadata=api.support.md)).user_record
    assert (record.reports_received, record.reports_made, len(record.cases)) == (1, 0, 1)
    assert record.cases[0].subject == suspect.name
    mine = (await api.admin.GetUserRecord(a.GetUserRecordRequest(name=f"userRecords/{reporter.user_id}"),
                                          metadata=api.admin_session.md)).user_record
    assert mine.reports_made == 1
    # A query matching no one, wildcards taken literally.
    assert not (await api.admin.SearchUserRecords(a.SearchUserRecordsRequest(query="%_%"),
                                                  metadata=api.support.md)).user_records
    await expect(IA, api.admin.SearchUserRecords(a.SearchUserRecordsRequest(query="x"), metadata=api.support.md))
    await expect(grpc.StatusCode.NOT_FOUND, api.admin.GetUserRecord(a.GetUserRecordRequest(
        name="userRecords/0123456789abcdef0123456789abcdef"), metadata=api.support.md))
    await expect(IA, api.admin.GetUserRecord(a.GetUserRecordRequest(name="users/x"), metadata=api.support.md))
    # Paged: newest accounts first, every one once.
    names, token = [], ""
    while True:
        page = await api.admin.SearchUserRecords(a.SearchUserRecordsRequest(query="example.com", page_size=3,
                                                                            page_token=token), metadata=api.support.md)
        names += [r.name for r in page.user_records]
        if not (token := page.next_page_token):
            break
    assert len(names) == len(set(names)) >= 4


async def test_a_plain_user_is_refused_every_staff_method(admin_api: Api):
    api = admin_api
    plain = await api.signup("Plain User")
    service = descriptor_pool.Default().FindServiceByName("petplatform.admin.v1.AdminService")
    checked = 0
    for method in service.methods:
        if method.name == "CreateReport":  # every signed-in user reports
            continue
        request = getattr(a, method.input_type.name)()
        call = getattr(api.admin, method.name)
        for who in (plain, None):
            md = who.md if who else ()
            code = PD if who else grpc.StatusCode.UNAUTHENTICATED
            await expect(code, call(request, metadata=md))
        checked += 1
    assert checked == len(service.methods) - 1
    # Staff without their second factor are plain users too.
    session = await api.signup("Role No Mfa")
    from tests.support.admin import grant_role
    from tests.support.platform import PASSWORD
    await grant_role(api, api.admin_session, session, "moderator")
    tokens = await api.auth.Login(auth_pb2.LoginRequest(email=session.email, password=PASSWORD))
    md = (("authorization", f"Bearer {tokens.access_token}"),)
    await expect(PD, api.admin.ListCases(a.ListCasesRequest(), metadata=md), "MODERATORS_ONLY")
    # Support is refused the moderators' and admins' methods.
    await expect(PD, api.admin.ListAuditEntries(a.ListAuditEntriesRequest(), metadata=api.support.md), "ADMIN_ONLY")
    await expect(PD, api.admin.ClaimCase(a.ClaimCaseRequest(name="cases/0123456789abcdef0123456789abcdef"),
                                         metadata=api.support.md), "MODERATORS_ONLY")
