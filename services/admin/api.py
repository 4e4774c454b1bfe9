"""AdminService: reports, the moderation queue, the audit log, the dashboard and staff's user records.

Every staff call that changes something (claiming, resolving, reversing) and every staff look at an
account is appended to the audit log in the transaction of its change, so the log and the state never
disagree. The reporter of a report is shown only to that reporter and to staff: the reported party
has no method that lists reports, and moderation.action_taken carries no reporter."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
import asyncio
import datetime as dt
import logging
from typing import TypeVar

from google.type import date_pb2
import grpc
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import errors, pagination, principal
from mesh.principal import Principal
from mesh.resources import check_text, decode_page_token, encode_page_token, new_id, page_size, parse_name, timestamp
from mesh.sql import Database, Row
from petplatform.admin.v1 import admin_pb2 as a
from petplatform.admin.v1 import admin_pb2_grpc
from petplatform.admin.v1 import events_pb2 as ev
from petplatform.marketplace.v1 import marketplace_pb2, marketplace_pb2_grpc
from services.admin import audit, domain, moderation, peers, store
from services.admin.peers import PEER_DEADLINE_SECONDS

log = logging.getLogger(__name__)

CASE_TYPE = "admin.petplatform.dev/Case"
USER_RECORD_TYPE = "admin.petplatform.dev/UserRecord"
ATTEMPTS = 3
MAX_DASHBOARD_DAYS = 366
USER_RECORD_CASES = 20
C = a.Case
E = a.AuditEntry
M = TypeVar("M")
METRICS = ("sign_ups", "listings", "matches", "adoptions", "messages", "bookings", "reports", "fraud_cases")


def report_message(r: Row) -> a.Report:
    return a.Report(name=f"reports/{r.id}", subject=r.subject, reason=r.reason, details=r.details,
                    reporter=f"users/{r.reporter_id}", create_time=timestamp(r.create_time),
                    update_time=timestamp(r.update_time))


def case_message(r: Row, *, reports: list[Row] | None = None, evidence: list[bytes] | None = None,
                 actions: list[Row] | None = None) -> a.Case:
    return a.Case(
        name=f"cases/{r.id}", subject=r.subject, user=f"users/{r.user_id}" if r.user_id else "",
        state=r.state, priority=r.priority, report_count=r.report_count, risk_score=r.risk_score,
        assignee=f"users/{r.assignee_id}" if r.assignee_id else "", held=r.held, resolution=r.resolution,
        reports=[report_message(x) for x in reports or ()],
        evidence=[a.FraudEvidence.FromString(x) for x in evidence or ()],
        actions=[a.CaseAction(action=x.action, reason=x.reason, actor=f"users/{x.actor_id}" if x.actor_id else "",
                              reversal=x.reversal, create_time=timestamp(x.create_time)) for x in actions or ()],
        create_time=timestamp(r.create_time), update_time=timestamp(r.update_time))


def audit_message(r: Row) -> a.AuditEntry:
    return a.AuditEntry(name=f"auditEntries/{r.sequence}", sequence=r.sequence, kind=r.kind, actor=r.actor,
                        action=r.action, target=r.target, detail=r.detail, create_time=timestamp(r.create_time),
                        hash=r.hash)


def user_record_message(r: Row) -> a.UserRecord:
    return a.UserRecord(name=f"userRecords/{r.id}", user=f"users/{r.id}", email=r.email,
                        display_name=r.display_name, role=r.role, status=r.status,
                        create_time=timestamp(r.create_time))


def to_date(d: date_pb2.Date, field: str) -> dt.date:
    try:
        return dt.date(d.year, d.month, d.day)
    except ValueError:
        raise errors.invalid_argument((field, "must be a full, valid date")) from None


def staff_detail(caller: Principal, **values: object) -> str:
    """An audit entry's detail: who acted as what, then the call's values."""
    parts = [f"role={caller.role}"] + [f"{k}={v}" for k, v in values.items()]
    return " ".join(parts)


def authorization(context: grpc.aio.ServicerContext) -> str:
    """The caller's `authorization` header, to ask peers as the caller."""
    return next((v for k, v in context.invocation_metadata() or () if k == "authorization" and isinstance(v, str)),
                "")


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, db: Database, *, marketplace: Callable[[], grpc.aio.Channel],
                 auth: Callable[[], grpc.aio.Channel], pets: Callable[[], grpc.aio.Channel],
                 now: Callable[[], dt.datetime], report_window: dt.timedelta):
        self.db = db
        self.marketplace, self.auth, self.pets = marketplace, auth, pets
        self.now = now
        self.report_window = report_window

    async def write(self, method: str, work: Callable[[AsyncSession, dt.datetime], Awaitable[M]]) -> M:
        """Runs `work` in one writing transaction; a loss on a unique key (two first reports of one
        subject at once) rolls it back and runs it again, when it finds the winner's rows."""
        for n in range(ATTEMPTS):
            try:
                async with self.db.transaction() as s:
                    return await work(s, self.now())
            except IntegrityError:
                if n == ATTEMPTS - 1:
                    raise
                log.info("%s: lost a race on a key; trying again", method)
        raise AssertionError("unreachable")

    async def _case(self, s: AsyncSession, name: str, *, lock: bool = False) -> Row:
        (case_id,) = parse_name(name, "cases/{}")
        row = await store.find_case(s, case_id, lock=lock)
        if row is None:
            raise errors.not_found(CASE_TYPE, name)
        return row

    # --- reports ---

    async def _business_owner(self, subject: str) -> str:
        try:
            business = (await marketplace_pb2_grpc.MarketplaceServiceStub(self.marketplace()).GetBusiness(
                marketplace_pb2.GetBusinessRequest(name=subject), timeout=PEER_DEADLINE_SECONDS)).business
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise errors.not_found("marketplace.petplatform.dev/Business", subject) from None
            log.warning("marketplace failed: %s %s", e.code().name, e.details())
            raise errors.unavailable("the business could not be checked; try again",
                                     "MARKETPLACE_UNAVAILABLE") from None
        return domain.user_id_of(business.owner)

    async def _owner(self, s: AsyncSession, kind: str, subject: str, now: dt.datetime) -> str:
        """Who is behind a pet, user or message. A message can be reported for the report window after it
        is sent; its row is purged after that, so an unknown message is either that old or too new."""
        row = await store.find_subject(s, subject)
        days = f"{self.report_window / dt.timedelta(days=1):g}"
        if kind == "message" and row is None:
            raise errors.not_found(
                "message", subject, reason="MESSAGE_NOT_REPORTABLE", report_window_days=days,
                why=f"it was sent more than {days} days ago (it can no longer be reported) or a moment ago (try "
                    "again shortly)")
        if row is None:
            raise errors.not_found(kind, subject)
        if row.sent_time is not None and row.sent_time < now - self.report_window:  # not purged yet
            raise errors.failed_precondition(f"{subject} was sent more than {days} days ago: it can no longer be "
                                             "reported", "REPORT_WINDOW_CLOSED", subject=subject,
                                             report_window_days=days)
        return str(row.user_id)

    async def CreateReport(self, request: a.CreateReportRequest, context) -> a.CreateReportResponse:
        caller = principal.require()
        kind = domain.check_report(request.report)
        r = request.report
        subject = r.subject
        business_owner = await self._business_owner(subject) if kind == "business" else None

        async def work(s: AsyncSession, now: dt.datetime) -> a.CreateReportResponse:
            # Pets, users and messages are known from their events; one reported in the second after its
            # creation may not be known yet, and is NOT_FOUND until it is.
            owner = business_owner if business_owner is not None else await self._owner(s, kind, subject, now)
            if owner == caller.user_id:
                raise errors.invalid_argument(("report.subject", "you cannot report yourself or what is yours"))
            case = await moderation.case_for(s, subject=subject, user_id=owner, now=now)
            existing = await store.find_report(s, case_id=case.id, reporter_id=caller.user_id)
            if existing is not None:  # the same person again: the report is updated, not counted twice
                await store.update_report(s, existing.id, reason=r.reason, details=r.details, update_time=now)
                return a.CreateReportResponse(report=report_message(await store.get_report(s, existing.id)))
            report_id = new_id()
            await store.add_report(s, id=report_id, case_id=case.id, subject=subject, reporter_id=caller.user_id,
                                   reason=r.reason, details=r.details, create_time=now, update_time=now)
            await moderation.reprioritise(s, case, now=now, report_count=case.report_count + 1)
            await store.count_up(s, day=now.date(), metric="reports")
            return a.CreateReportResponse(report=report_message(await store.get_report(s, report_id)))
        return await self.write("CreateReport", work)

    # --- the moderation queue ---

    async def ListCases(self, request: a.ListCasesRequest, context) -> a.ListCasesResponse:
        states = sorted(set(request.states)) or list(domain.UNDECIDED)
        if any(x == C.STATE_UNSPECIFIED or x not in C.State.values() for x in states):
            raise errors.invalid_argument(("states", "must be defined, specified states"))
        size = page_size(request.page_size)
        position = decode_page_token(request.page_token, request)
        after = None
        if position is not None:
            after = (int(position[0]), str(position[1]))
        async with self.db.read() as s:
            rows = await store.list_cases(s, states=states, after=after, size=size)
        rows, token = pagination.page(rows, size, lambda r: [-r.priority, r.id], request)
        return a.ListCasesResponse(cases=[case_message(r) for r in rows], next_page_token=token)

    async def GetCase(self, request: a.GetCaseRequest, context) -> a.GetCaseResponse:
        async with self.db.read() as s:
            row = await self._case(s, request.name)
            return a.GetCaseResponse(case=case_message(
                row, reports=list(await store.reports_of(s, row.id)), evidence=await store.evidence_of(s, row.id),
                actions=list(await store.actions_of(s, row.id))))

    @staticmethod
    def _check_not_claimed_by_other(caller: Principal, case: Row) -> None:
        if case.assignee_id and case.assignee_id != caller.user_id and not caller.is_admin:
            raise errors.failed_precondition("another moderator has claimed this case", "CASE_CLAIMED",
                                             assignee=f"users/{case.assignee_id}")

    async def ClaimCase(self, request: a.ClaimCaseRequest, context) -> a.ClaimCaseResponse:
        caller = principal.require()

        async def work(s: AsyncSession, now: dt.datetime) -> a.ClaimCaseResponse:
            case = await self._case(s, request.name, lock=True)
            if case.state == C.STATE_RESOLVED:
                raise errors.failed_precondition("the case is resolved", "CASE_RESOLVED")
            self._check_not_claimed_by_other(caller, case)
            if case.assignee_id != caller.user_id:
                await store.update_case(s, case.id, state=C.STATE_IN_REVIEW, assignee_id=caller.user_id,
                                        update_time=now)
                await moderation.record(s, kind=E.KIND_STAFF_ACTION, actor_id=caller.user_id, action="ClaimCase",
                                        target=request.name, detail=staff_detail(caller, subject=case.subject), now=now)
            return a.ClaimCaseResponse(case=case_message(await store.get_case(s, case.id)))
        return await self.write("ClaimCase", work)

    async def ResolveCase(self, request: a.ResolveCaseRequest, context) -> a.ResolveCaseResponse:
        caller = principal.require()
        reason = domain.check_reason(request.reason)
        domain.check_action(request.action)

        async def work(s: AsyncSession, now: dt.datetime) -> a.ResolveCaseResponse:
            case = await self._case(s, request.name, lock=True)
            if case.state == C.STATE_RESOLVED:
                if case.resolution == request.action:  # a retry
                    return a.ResolveCaseResponse(case=case_message(case))
                raise errors.failed_precondition("the case is resolved", "CASE_RESOLVED",
                                                 resolution=ev.ModerationActionTaken.Action.Name(case.resolution))
            self._check_not_claimed_by_other(caller, case)
            domain.check_decision(request.action, subject=case.subject, user_id=case.user_id)
            await moderation.resolve(s, case, action=request.action, reason=reason, actor_id=caller.user_id, now=now)
            await moderation.record(s, kind=E.KIND_STAFF_ACTION, actor_id=caller.user_id, action="ResolveCase",
                                    target=request.name, now=now, detail=staff_detail(
                                        caller, subject=case.subject,
                                        action=ev.ModerationActionTaken.Action.Name(request.action), reason=reason))
            return a.ResolveCaseResponse(case=case_message(await store.get_case(s, case.id)))
        return await self.write("ResolveCase", work)

    async def ReverseAction(self, request: a.ReverseActionRequest, context) -> a.ReverseActionResponse:
        caller = principal.require()
        reason = domain.check_reason(request.reason)

        async def work(s: AsyncSession, now: dt.datetime) -> a.ReverseActionResponse:
            case = await self._case(s, request.name, lock=True)
            undone = await moderation.reverse(s, case, reason=reason, actor_id=caller.user_id, now=now)
            if not undone:
                raise errors.failed_precondition(
                    "the case has no action in force to reverse (undecided without a hold, dismissed, or its "
                    "subject has a newer undecided case)", "NOTHING_TO_REVERSE")
            await moderation.record(s, kind=E.KIND_STAFF_ACTION, actor_id=caller.user_id, action="ReverseAction",
                                    target=request.name, now=now, detail=staff_detail(
                                        caller, subject=case.subject,
                                        undone=ev.ModerationActionTaken.Action.Name(undone), reason=reason))
            return a.ReverseActionResponse(case=case_message(await store.get_case(s, case.id)))
        return await self.write("ReverseAction", work)

    # --- the audit log ---

    async def ListAuditEntries(self, request: a.ListAuditEntriesRequest, context) -> a.ListAuditEntriesResponse:
        size = page_size(request.page_size)
        position = decode_page_token(request.page_token, request)
        before = int(position[0]) if position is not None else None
        async with self.db.read() as s:
            rows = await store.audit_page(s, before=before, size=size)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = encode_page_token([rows[-1].sequence], request)
        return a.ListAuditEntriesResponse(audit_entries=[audit_message(r) for r in rows], next_page_token=token)

    async def VerifyAuditLog(self, request: a.VerifyAuditLogRequest, context) -> a.VerifyAuditLogResponse:
        async with self.db.read() as s:
            verdict = await audit.verify(s)
        return a.VerifyAuditLogResponse(
            intact=verdict.intact, entries_checked=verdict.checked, problem=verdict.problem,
            first_bad_entry=f"auditEntries/{verdict.first_bad}" if verdict.first_bad is not None else "")

    # --- the dashboard ---

    async def GetDashboard(self, request: a.GetDashboardRequest, context) -> a.GetDashboardResponse:
        first, last = to_date(request.start_date, "start_date"), to_date(request.end_date, "end_date")
        if last < first:
            raise errors.invalid_argument(("end_date", "must not be before start_date"))
        if (last - first).days >= MAX_DASHBOARD_DAYS:
            raise errors.invalid_argument(("end_date", f"at most {MAX_DASHBOARD_DAYS} days from start_date"))
        async with self.db.read() as s:
            counts = await store.counts_between(s, first, last)
        days = []
        total = a.DailyCounts()
        day = first
        while day <= last:
            values = {m: counts.get((day, m), 0) for m in METRICS}
            days.append(a.DailyCounts(date=date_pb2.Date(year=day.year, month=day.month, day=day.day), **values))
            for m, v in values.items():
                setattr(total, m, getattr(total, m) + v)
            day += dt.timedelta(days=1)
        return a.GetDashboardResponse(days=days, total=total)

    # --- user records ---

    async def SearchUserRecords(self, request: a.SearchUserRecordsRequest, context) -> a.SearchUserRecordsResponse:
        caller = principal.require()
        v: list[tuple[str, str]] = []
        check_text(v, "query", request.query, min_len=2, max_len=100)
        if v:
            raise errors.invalid_argument(*v)
        size = page_size(request.page_size)
        position = decode_page_token(request.page_token, request)
        after = (dt.datetime.fromisoformat(position[0]), str(position[1])) if position is not None else None

        async def work(s: AsyncSession, now: dt.datetime) -> a.SearchUserRecordsResponse:
            rows = await store.search_user_records(s, query=request.query.strip(), after=after, size=size)
            page, token = pagination.page(rows, size, lambda r: [r.create_time.isoformat(), r.id], request)
            await moderation.record(s, kind=E.KIND_STAFF_ACTION, actor_id=caller.user_id, action="SearchUserRecords",
                                    target="", detail=staff_detail(caller, query=request.query.strip()), now=now)
            return a.SearchUserRecordsResponse(user_records=[user_record_message(r) for r in page],
                                               next_page_token=token)
        return await self.write("SearchUserRecords", work)

    async def GetUserRecord(self, request: a.GetUserRecordRequest, context) -> a.GetUserRecordResponse:
        caller = principal.require()
        (user_id,) = parse_name(request.name, "userRecords/{}")
        async with self.db.read() as s:
            if await store.find_user_record(s, user_id) is None:
                raise errors.not_found(USER_RECORD_TYPE, request.name)
        # Asked of their services with the staff member's own token, before the audit transaction (no
        # database transaction waits on a peer); a part its service cannot give now is named, not faked.
        token, user = authorization(context), f"users/{user_id}"
        sessions, listings = await asyncio.gather(peers.sessions_of(self.auth(), user=user, token=token),
                                                  peers.listings_of(self.pets(), user=user, token=token))

        async def work(s: AsyncSession, now: dt.datetime) -> a.GetUserRecordResponse:
            row = await store.find_user_record(s, user_id)
            if row is None:
                raise errors.not_found(USER_RECORD_TYPE, request.name)
            record = user_record_message(row)
            record.reports_received, record.reports_made = await store.report_counts(s, user_id)
            record.cases.extend(case_message(c) for c in await store.cases_of_user(s, user_id, limit=USER_RECORD_CASES))
            if sessions is None:
                record.unavailable.append("sessions")
            else:
                record.sessions.extend(sessions)
            if listings is None:
                record.unavailable.append("listings")
            else:
                record.listings.extend(listings)
            await moderation.record(s, kind=E.KIND_STAFF_ACTION, actor_id=caller.user_id, action="GetUserRecord",
                                    target=request.name, detail=staff_detail(caller), now=now)
            return a.GetUserRecordResponse(user_record=record)
        return await self.write("GetUserRecord", work)
