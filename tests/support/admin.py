"""The admin service under test: staff sessions, reports, fraud scores as the fraud service sends them."""
from __future__ import annotations

import grpc
import sqlalchemy as sa

from petplatform.admin.v1 import admin_pb2 as a
from petplatform.auth.v1 import auth_pb2
from petplatform.fraud.v1 import events_pb2 as fraud_events
from petplatform.fraud.v1 import risk_pb2
from tests.support.matching import until
from tests.support.platform import PASSWORD, Api, Session, module_of, totp_code

ADMIN_EMAIL = "admin@admin-tests.example.com"


ROLES = {"user": auth_pb2.ROLE_USER, "moderator": auth_pb2.ROLE_MODERATOR, "support": auth_pb2.ROLE_SUPPORT,
         "admin": auth_pb2.ROLE_ADMIN}


async def grant_role(api: Api, session: Session, role: str, *, admin: Session | None = None) -> Session:
    """`role` granted by an admin (api.admin_session unless given) through auth's SetAccountRole. Auth ends
    every session of the account, so this signs it in again with its password: the returned session
    carries the new role (staff without their second factor act as plain users until they enroll it)."""
    by = admin or api.admin_session
    await api.auth.SetAccountRole(auth_pb2.SetAccountRoleRequest(name=session.name, role=ROLES[role]),
                                  metadata=by.md)
    tokens = await api.auth.Login(auth_pb2.LoginRequest(email=session.email, password=PASSWORD))
    assert tokens.access_token, "an account with a second factor signs in with login_with_code"
    return Session(session.user_id, session.email, tokens.access_token, tokens.refresh_token)


async def signup_staff(api: Api, role: str, name: str = "Casey Staff") -> Session:
    """An account with `role` (moderator, support), signed in with its second factor, as staff must be."""
    session = await grant_role(api, await api.signup(name), role)
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


async def subject_known(api: Api, subject: str) -> bool:
    """Whether the admin service has learnt of a subject from its event, so a report on it is taken (tests only)."""
    from services.admin import store
    async with module_of(api, "admin").db.read() as s:
        return await store.owner_of(s, subject) is not None
