"""The admin service under test: staff sessions, reports, fraud scores as the fraud service sends them."""
from __future__ import annotations

import grpc
import sqlalchemy as sa

from petplatform.admin.v1 import admin_pb2 as a
from petplatform.fraud.v1 import events_pb2 as fraud_events
from petplatform.fraud.v1 import risk_pb2
from services.auth import store as auth_store
from tests.support.matching import until
from tests.support.platform import Api, Session, module_of, totp_code

ADMIN_EMAIL = "admin@admin-tests.example.com"


async def grant_role(api: Api, session: Session, role: str) -> None:
    """STAND-IN until auth's role RPC lands (issue 12, the auth part): writes the role into auth's own
    table, as an admin granting it would. Tests only; the next sign-in carries it in the token."""
    async with module_of(api, "auth").db.transaction() as s:
        await s.execute(auth_store.accounts.update().where(auth_store.accounts.c.id == session.user_id)
                        .values(role=role))


async def signup_staff(api: Api, role: str, name: str = "Casey Staff") -> Session:
    """An account with `role` (moderator, support), signed in with its second factor, as staff must be."""
    session = await api.signup(name)
    await grant_role(api, session, role)
    secret, _ = await api.enroll_mfa(session)
    return await api.login_with_code(session.email, totp_code(secret, ahead=1))


async def report(api: Api, reporter: Session, subject: str, reason: int = a.REPORT_REASON_SCAM,
                 details: str = "") -> a.Report:
    return (await api.admin.CreateReport(a.CreateReportRequest(report=a.Report(
        subject=subject, reason=reason, details=details)), metadata=reporter.md)).report  # type: ignore[arg-type]


async def report_when_known(api: Api, reporter: Session, subject: str, **kw) -> a.Report:
    """A report on a subject the admin service learns of from an event: NOT_FOUND until it has."""
    async def attempt():
        try:
            return await report(api, reporter, subject, **kw)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return None
    return await until(attempt, what=f"a report on {subject}")


def fraud_detected(subject: str, user: str, score: float, *, hold: bool = False) -> fraud_events.FraudDetected:
    return fraud_events.FraudDetected(
        subject=subject, user=user, score=score, model="test-model-1", source_event="evt-1",
        action=fraud_events.FraudDetected.ACTION_HOLD if hold else fraud_events.FraudDetected.ACTION_REVIEW,
        factors=[risk_pb2.RiskFactor(code="price_far_below_typical", description="price 90% below the typical "
                                     "price for a dog", contribution=0.6),
                 risk_pb2.RiskFactor(code="payment_off_platform", description="asks for a gift card",
                                     contribution=0.3)])


async def open_case_of(api: Api, subject: str) -> a.Case | None:
    """The undecided case of a subject, read from the admin service's tables (tests only)."""
    from services.admin import store
    async with module_of(api, "admin").db.read() as s:
        row = (await s.execute(sa.select(store.cases.c.id).where(store.cases.c.subject == subject)
                               .order_by(store.cases.c.id.desc()))).first()
    if row is None:
        return None
    return a.Case(name=f"cases/{row.id}")
