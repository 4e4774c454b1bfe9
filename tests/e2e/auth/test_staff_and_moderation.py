"""Staff roles and account status (suspension, ban) through the public gRPC API, moderation decisions
(moderation.action_taken) taking effect in auth, and the security events auth records for the audit log."""
from __future__ import annotations

import asyncio
import itertools

import grpc
import pytest
import sqlalchemy as sa

from mesh.events import event_type
from mesh.events.outbox import outbox
from petplatform.admin.v1 import events_pb2 as admin_events
from petplatform.auth.v1 import auth_pb2
from petplatform.auth.v1 import events_pb2 as auth_events
from petplatform.common.v1 import event_pb2
from petplatform.pet.v1 import pet_pb2
from tests.support.errors import expect
from tests.support.events import Producer
from tests.support.matching import until
from tests.support.pets import create, dog
from tests.support.platform import (
    PASSWORD, Api, Session, drop_real_state, embedded_settings, json_claims, module_of, real_settings,
    start_platform, totp_code,
)

ADMINS = [f"admin{i}@staff.example.com" for i in range(12)]
_admins = itertools.count()
Action = admin_events.ModerationActionTaken
Kind = auth_events.SecurityEventRecorded


@pytest.fixture(scope="module")
async def api(tmp_path_factory, smtp_sink):
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink,
                                                      admin_emails=ADMINS))
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    await platform.stop(grace=1)


@pytest.fixture(scope="module")
async def admin_bus(api: Api, tmp_path_factory):
    """The admin service's outbox (the service is not in this tree yet): its moderation decisions."""
    producer = await Producer.open("admin", api.platform.rt.bus, tmp_path_factory.mktemp("admin"))
    yield producer
    await producer.close()


async def new_admin(api: Api) -> Session:
    return await api.signup_admin(ADMINS[next(_admins)])


async def staff(api: Api, admin: Session, role: int) -> Session:
    """A new account given a staff role by `admin`, signed in again with its second factor."""
    s = await api.signup("Helper")
    secret, _ = await api.enroll_mfa(s)
    await api.auth.SetAccountRole(auth_pb2.SetAccountRoleRequest(name=s.name, role=role), metadata=admin.md)
    return await api.login_with_code(s.email, totp_code(secret, ahead=1))


def set_status(api: Api, who: Session, target: str, status: int, reason: str = "scam listings"):
    return api.auth.SetAccountStatus(auth_pb2.SetAccountStatusRequest(name=target, status=status, reason=reason),
                                     metadata=who.md)


def get_account(api: Api, who: Session, name: str):
    return api.auth.GetAccount(auth_pb2.GetAccountRequest(name=name), metadata=who.md)


def checked(api: Api, session: Session):
    """A call that needs a live session."""
    return api.auth.ListSessions(auth_pb2.ListSessionsRequest(parent=session.name), metadata=session.md)


async def emitted(api: Api, kind, user: str | None = None) -> list:
    """The events of this type auth wrote to its outbox (about `user`, if given), oldest first."""
    async with module_of(api, "auth").db.read() as tx:
        bodies = (await tx.execute(sa.select(outbox.c.body).where(outbox.c.event_type == event_type(kind))
                                   .order_by(outbox.c.id))).scalars().all()
    out = []
    for body in bodies:
        e = kind()
        event_pb2.EventEnvelope.FromString(body).payload.Unpack(e)
        if user is None or e.user == user:
            out.append(e)
    return out


async def test_an_admin_gives_a_role_that_holds_from_the_next_sign_in(api: Api):
    admin = await new_admin(api)
    s = await api.signup("Soon Moderator")
    secret, _ = await api.enroll_mfa(s)
    answer = await api.auth.SetAccountRole(auth_pb2.SetAccountRoleRequest(name=s.name, role=auth_pb2.ROLE_MODERATOR),
                                           metadata=admin.md)
    assert answer.account.role == auth_pb2.ROLE_MODERATOR
    # Tokens carry the role: the old session ends at once, the next sign-in has the new role.
    await expect(grpc.StatusCode.UNAUTHENTICATED, checked(api, s), "SESSION_REVOKED")
    moderator = await api.login_with_code(s.email, totp_code(secret, ahead=1))
    assert json_claims(moderator.access_token)["role"] == "moderator"
    other = await api.signup()
    await set_status(api, moderator, other.name, auth_pb2.ACCOUNT_STATUS_SUSPENDED)  # a moderator's RPC
    [changed] = await emitted(api, auth_events.UserRoleChanged, s.name)
    assert (changed.role, changed.previous_role, changed.actor) == (
        auth_pb2.ROLE_MODERATOR, auth_pb2.ROLE_USER, admin.name)
    # The same role again changes nothing, and says nothing.
    await api.auth.SetAccountRole(auth_pb2.SetAccountRoleRequest(name=s.name, role=auth_pb2.ROLE_MODERATOR),
                                  metadata=admin.md)
    assert len(await emitted(api, auth_events.UserRoleChanged, s.name)) == 1
    await checked(api, moderator)
    # Without the second factor a moderator is an ordinary user.
    plain = await api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))
    assert plain.mfa_challenge and not plain.access_token


async def test_only_admins_give_roles_and_mistakes_are_the_callers(api: Api):
    admin = await new_admin(api)
    moderator = await staff(api, admin, auth_pb2.ROLE_MODERATOR)
    user, target = await api.signup(), await api.signup()
    request = auth_pb2.SetAccountRoleRequest(name=target.name, role=auth_pb2.ROLE_ADMIN)
    for who, reason in ((user, "ADMIN_ONLY"), (moderator, "ADMIN_ONLY")):
        await expect(grpc.StatusCode.PERMISSION_DENIED, api.auth.SetAccountRole(request, metadata=who.md), reason)
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.SetAccountRole(request))
    for bad in (auth_pb2.SetAccountRoleRequest(name=target.name),
                auth_pb2.SetAccountRoleRequest(name=target.name, role=99),  # type: ignore[arg-type]
                auth_pb2.SetAccountRoleRequest(name="accounts/x", role=auth_pb2.ROLE_USER),
                auth_pb2.SetAccountRoleRequest(role=auth_pb2.ROLE_USER)):
        await expect(grpc.StatusCode.INVALID_ARGUMENT, api.auth.SetAccountRole(bad, metadata=admin.md))
    await expect(grpc.StatusCode.NOT_FOUND, api.auth.SetAccountRole(
        auth_pb2.SetAccountRoleRequest(name="users/" + "0" * 32, role=auth_pb2.ROLE_USER), metadata=admin.md))
    await checked(api, target)  # nothing happened to them


async def test_a_suspension_ends_every_session_at_once_and_refuses_sign_in(api: Api):
    admin = await new_admin(api)
    moderator = await staff(api, admin, auth_pb2.ROLE_MODERATOR)
    support = await staff(api, admin, auth_pb2.ROLE_SUPPORT)
    s = await api.signup("Scammer")
    phone = await api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))
    answer = await set_status(api, moderator, s.name, auth_pb2.ACCOUNT_STATUS_SUSPENDED, " fake puppy ads ")
    assert (answer.account.status, answer.account.status_reason) == (auth_pb2.ACCOUNT_STATUS_SUSPENDED,
                                                                     "fake puppy ads")
    await expect(grpc.StatusCode.UNAUTHENTICATED, checked(api, s), "SESSION_REVOKED")
    for token in (s.refresh_token, phone.refresh_token):
        await expect(grpc.StatusCode.PERMISSION_DENIED, api.auth.RefreshToken(
            auth_pb2.RefreshTokenRequest(refresh_token=token)), "ACCOUNT_SUSPENDED")
    await expect(grpc.StatusCode.PERMISSION_DENIED, api.auth.Login(
        auth_pb2.LoginRequest(email=s.email, password=PASSWORD)), "ACCOUNT_SUSPENDED")
    # Only who holds the password learns the status.
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.Login(
        auth_pb2.LoginRequest(email=s.email, password="not the password at all")), "INVALID_CREDENTIALS")
    seen = (await get_account(api, support, s.name)).account
    assert (seen.status, seen.status_reason, seen.mfa_enabled) == (auth_pb2.ACCOUNT_STATUS_SUSPENDED,
                                                                   "fake puppy ads", False)
    [changed] = await emitted(api, auth_events.UserStatusChanged, s.name)
    assert (changed.status, changed.previous_status, changed.reason, changed.actor, changed.case) == (
        auth_pb2.ACCOUNT_STATUS_SUSPENDED, auth_pb2.ACCOUNT_STATUS_ACTIVE, "fake puppy ads", moderator.name, "")
    # Suspending again changes nothing; reinstating lets them in again.
    await set_status(api, moderator, s.name, auth_pb2.ACCOUNT_STATUS_SUSPENDED)
    back = await set_status(api, moderator, s.name, auth_pb2.ACCOUNT_STATUS_ACTIVE, "appeal accepted")
    assert (back.account.status, back.account.status_reason) == (auth_pb2.ACCOUNT_STATUS_ACTIVE, "")
    assert [e.status for e in await emitted(api, auth_events.UserStatusChanged, s.name)] == [
        auth_pb2.ACCOUNT_STATUS_SUSPENDED, auth_pb2.ACCOUNT_STATUS_ACTIVE]
    assert (await api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))).access_token


async def test_who_may_ban_and_lift_a_ban(api: Api):
    admin = await new_admin(api)
    moderator = await staff(api, admin, auth_pb2.ROLE_MODERATOR)
    support = await staff(api, admin, auth_pb2.ROLE_SUPPORT)
    user, target = await api.signup(), await api.signup()
    await set_status(api, moderator, target.name, auth_pb2.ACCOUNT_STATUS_BANNED)
    await expect(grpc.StatusCode.PERMISSION_DENIED, api.auth.Login(
        auth_pb2.LoginRequest(email=target.email, password=PASSWORD)), "ACCOUNT_BANNED")
    for status in (auth_pb2.ACCOUNT_STATUS_ACTIVE, auth_pb2.ACCOUNT_STATUS_SUSPENDED):
        await expect(grpc.StatusCode.PERMISSION_DENIED, set_status(api, moderator, target.name, status), "ADMIN_ONLY")
    await set_status(api, admin, target.name, auth_pb2.ACCOUNT_STATUS_ACTIVE, "ban lifted on appeal")
    await api.auth.Login(auth_pb2.LoginRequest(email=target.email, password=PASSWORD))
    # Staff accounts are for admins to act on; nobody acts on their own; plain users and support not at all.
    for staff_account in (support, admin):
        await expect(grpc.StatusCode.PERMISSION_DENIED,
                     set_status(api, moderator, staff_account.name, auth_pb2.ACCOUNT_STATUS_SUSPENDED), "ADMIN_ONLY")
    await expect(grpc.StatusCode.PERMISSION_DENIED,
                 set_status(api, moderator, moderator.name, auth_pb2.ACCOUNT_STATUS_SUSPENDED), "OWN_ACCOUNT")
    for who, reason in ((user, "MODERATORS_ONLY"), (support, "MODERATORS_ONLY")):
        await expect(grpc.StatusCode.PERMISSION_DENIED,
                     set_status(api, who, target.name, auth_pb2.ACCOUNT_STATUS_SUSPENDED), reason)
    for bad in (set_status(api, moderator, target.name, auth_pb2.ACCOUNT_STATUS_SUSPENDED, "  "),
                set_status(api, moderator, target.name, auth_pb2.ACCOUNT_STATUS_SUSPENDED, "x" * 501),
                set_status(api, moderator, target.name, auth_pb2.ACCOUNT_STATUS_SUSPENDED, "bad\u202ereason"),
                set_status(api, moderator, target.name, auth_pb2.ACCOUNT_STATUS_UNSPECIFIED),
                set_status(api, moderator, "pets/1", auth_pb2.ACCOUNT_STATUS_SUSPENDED)):
        await expect(grpc.StatusCode.INVALID_ARGUMENT, bad)
    await expect(grpc.StatusCode.NOT_FOUND,
                 set_status(api, moderator, "users/" + "0" * 32, auth_pb2.ACCOUNT_STATUS_SUSPENDED))
    await checked(api, user)


async def test_a_suspended_account_cannot_finish_a_two_factor_sign_in(api: Api):
    admin = await new_admin(api)
    s = await api.signup()
    secret, _ = await api.enroll_mfa(s)
    pending = await api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))
    await set_status(api, admin, s.name, auth_pb2.ACCOUNT_STATUS_SUSPENDED)
    await expect(grpc.StatusCode.PERMISSION_DENIED, api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(
        mfa_challenge=pending.mfa_challenge, code=totp_code(secret, ahead=1))), "ACCOUNT_SUSPENDED")
    await expect(grpc.StatusCode.PERMISSION_DENIED, api.auth.Login(
        auth_pb2.LoginRequest(email=s.email, password=PASSWORD)), "ACCOUNT_SUSPENDED")


async def test_moderation_decisions_suspend_ban_and_are_reversed(api: Api, admin_bus: Producer):
    admin = await new_admin(api)
    s = await api.signup("Reported")

    async def status() -> int:
        return (await get_account(api, admin, s.name)).account.status

    async def becomes(value: int) -> None:
        await until(lambda: _is(status(), value), what=f"status {value}")

    suspend = Action(case="cases/c1", subject=s.name, user=s.name, action=Action.ACTION_SUSPEND_USER,
                     reason="scam reports", actor=admin.name, upheld=True)
    [first] = await admin_bus.emit(suspend)
    await becomes(auth_pb2.ACCOUNT_STATUS_SUSPENDED)
    await expect(grpc.StatusCode.UNAUTHENTICATED, checked(api, s), "SESSION_REVOKED")
    # A replay (the same event) and a repeat (a new event saying the same) change nothing more.
    await admin_bus.replay(first)
    await admin_bus.emit(suspend)
    # A malformed decision is set aside; the ones after it still apply.
    await admin_bus.emit(Action(case="cases/bad", user="pets/1", action=Action.ACTION_BAN_USER))
    await admin_bus.emit(Action(case="cases/c2", subject=s.name, user=s.name, action=Action.ACTION_BAN_USER,
                                reason="payment off the platform", upheld=True))
    await becomes(auth_pb2.ACCOUNT_STATUS_BANNED)
    # Undoing the suspension leaves the later ban; undoing the ban reinstates.
    await admin_bus.emit(Action(case="cases/c1", subject=s.name, user=s.name, action=Action.ACTION_SUSPEND_USER,
                                reversal=True))
    await admin_bus.emit(Action(case="cases/c2", subject=s.name, user=s.name, action=Action.ACTION_BAN_USER,
                                reason="appeal upheld", reversal=True))
    await becomes(auth_pb2.ACCOUNT_STATUS_ACTIVE)
    changes = await emitted(api, auth_events.UserStatusChanged, s.name)
    assert [(e.status, e.case, e.reason, e.actor) for e in changes] == [
        (auth_pb2.ACCOUNT_STATUS_SUSPENDED, "cases/c1", "scam reports", ""),
        (auth_pb2.ACCOUNT_STATUS_BANNED, "cases/c2", "payment off the platform", ""),
        (auth_pb2.ACCOUNT_STATUS_ACTIVE, "cases/c2", "appeal upheld", "")]
    assert (await api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))).access_token
    # Decisions on listings are not auth's.
    await admin_bus.emit(Action(case="cases/c3", subject="pets/p1", user=s.name, action=Action.ACTION_HIDE_LISTING))
    await admin_bus.emit(Action(case="cases/c4", subject=s.name, user=s.name, action=Action.ACTION_WARN))
    marker = await api.signup()
    await admin_bus.emit(Action(case="cases/c5", user=marker.name, action=Action.ACTION_SUSPEND_USER, reason="r"))
    await until(lambda: _is(_status_of(api, admin, marker.name), auth_pb2.ACCOUNT_STATUS_SUSPENDED))
    assert await status() == auth_pb2.ACCOUNT_STATUS_ACTIVE


async def _status_of(api: Api, who: Session, name: str) -> int:
    return (await get_account(api, who, name)).account.status


async def _is(value, expected) -> bool:
    return await value == expected


async def test_staff_read_accounts_and_their_sessions(api: Api):
    admin = await new_admin(api)
    support = await staff(api, admin, auth_pb2.ROLE_SUPPORT)
    user, other = await api.signup("Customer"), await api.signup()
    await api.enroll_mfa(user)
    sessions = (await api.auth.ListSessions(auth_pb2.ListSessionsRequest(parent=user.name),
                                            metadata=support.md)).sessions
    assert len(sessions) == 1 and sessions[0].name.startswith(user.name + "/sessions/") and not sessions[0].current
    account = (await get_account(api, support, user.name)).account
    assert (account.name, account.email, account.display_name, account.mfa_enabled, account.status) == (
        user.name, user.email, "Customer", True, auth_pb2.ACCOUNT_STATUS_ACTIVE)
    assert (await get_account(api, user, user.name)).account.mfa_enabled  # the owner too
    # Others may not; nor may support without their second factor.
    await expect(grpc.StatusCode.PERMISSION_DENIED, get_account(api, other, user.name), "STAFF_ONLY")
    await expect(grpc.StatusCode.PERMISSION_DENIED,
                 api.auth.ListSessions(auth_pb2.ListSessionsRequest(parent=user.name), metadata=other.md))
    bare = await api.auth.Login(auth_pb2.LoginRequest(email=support.email, password=PASSWORD))
    assert bare.mfa_challenge  # a staff account signs in with its second factor
    await expect(grpc.StatusCode.NOT_FOUND, get_account(api, support, "users/" + "0" * 32))
    await expect(grpc.StatusCode.INVALID_ARGUMENT, get_account(api, support, "users/"))
    # Finding accounts: by email (as Register normalises it), by role, by status; newest first, in pages.
    found = (await api.auth.ListAccounts(auth_pb2.ListAccountsRequest(email=f"  {user.email.upper()} "),
                                         metadata=support.md)).accounts
    assert [a.name for a in found] == [user.name]
    supports = await api.auth.ListAccounts(auth_pb2.ListAccountsRequest(role=auth_pb2.ROLE_SUPPORT, page_size=1),
                                           metadata=support.md)
    assert [a.name for a in supports.accounts] == [support.name] and supports.next_page_token
    await expect(grpc.StatusCode.PERMISSION_DENIED, api.auth.ListAccounts(auth_pb2.ListAccountsRequest(),
                                                                          metadata=user.md), "STAFF_ONLY")
    await expect(grpc.StatusCode.INVALID_ARGUMENT, api.auth.ListAccounts(
        auth_pb2.ListAccountsRequest(status=42), metadata=support.md))  # type: ignore[arg-type]
    await expect(grpc.StatusCode.INVALID_ARGUMENT, api.auth.ListAccounts(
        auth_pb2.ListAccountsRequest(page_token="forged"), metadata=support.md))


async def test_security_events_record_failures_and_changes_without_secrets(api: Api):
    s = await api.signup()
    ip = api.from_address("203.0.113.9")
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.Login(
        auth_pb2.LoginRequest(email=s.email, password="guess number one"), metadata=ip))
    nobody = "nobody-here@example.com"
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.Login(
        auth_pb2.LoginRequest(email=nobody, password="guess number two"), metadata=ip))
    # A refresh token used twice: its session is revoked and that is recorded.
    rotated = await api.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=s.refresh_token))
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.RefreshToken(
        auth_pb2.RefreshTokenRequest(refresh_token=s.refresh_token)), "REFRESH_TOKEN_REUSED")
    fresh = await api.signup()
    secret, _ = await api.enroll_mfa(fresh)
    pending = await api.auth.Login(auth_pb2.LoginRequest(email=fresh.email, password=PASSWORD))
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(
        mfa_challenge=pending.mfa_challenge, code="000000")))
    await api.auth.DisableMfa(auth_pb2.DisableMfaRequest(password=PASSWORD, code=totp_code(secret, ahead=1)),
                              metadata=fresh.md)
    events = await emitted(api, Kind)
    of = lambda user: [(e.kind, e.detail) for e in events if e.user == user]
    assert of(s.name) == [(Kind.KIND_SIGN_IN_FAILED, "wrong password"),
                          (Kind.KIND_REFRESH_TOKEN_REUSED, f"session {json_claims(s.access_token)['sid']} revoked")]
    assert [e.client_address for e in events if e.user == s.name][0] == "203.0.113.9"
    assert (Kind.KIND_SIGN_IN_FAILED, "unknown email") in of("")
    assert of(fresh.name) == [(Kind.KIND_MFA_CHANGED, "two-factor authentication turned on"),
                              (Kind.KIND_SIGN_IN_FAILED, "wrong second factor"),
                              (Kind.KIND_MFA_CHANGED, "two-factor authentication turned off")]
    async with module_of(api, "auth").db.read() as tx:
        bodies = (await tx.execute(sa.select(outbox.c.body).where(
            outbox.c.event_type == "security.event_recorded"))).scalars().all()
    for secret_text in ("guess number", PASSWORD, s.refresh_token, rotated.refresh_token, nobody):
        assert not any(secret_text.encode() in b for b in bodies)
    assert not [e for e in events if e.kind == Kind.KIND_SIGNING_KEY_ROTATED]  # the first key is no rotation


async def test_a_new_signing_key_is_recorded_as_a_rotation(tmp_path, smtp_sink):
    settings = embedded_settings(tmp_path, smtp_sink)
    for _ in range(2):
        platform = await start_platform(settings)
        await platform.stop(grace=0)
    (tmp_path / "jwt-signing-key.pem").unlink()  # an operator replaces the key
    platform = await start_platform(settings)
    try:
        api = Api(platform, smtp_sink)
        [rotated] = [e for e in await emitted(api, Kind) if e.kind == Kind.KIND_SIGNING_KEY_ROTATED]
        assert module_of(api, "auth").keys.kid in rotated.detail and not rotated.user
        await api.channel.close()
    finally:
        await platform.stop(grace=0)


async def test_the_last_admin_cannot_stop_being_one(api: Api):
    admin = await new_admin(api)
    others = await api.auth.ListAccounts(auth_pb2.ListAccountsRequest(role=auth_pb2.ROLE_ADMIN, page_size=100),
                                         metadata=admin.md)
    for a in others.accounts:
        if a.name != admin.name:
            await api.auth.SetAccountRole(auth_pb2.SetAccountRoleRequest(name=a.name, role=auth_pb2.ROLE_USER),
                                          metadata=admin.md)
    await expect(grpc.StatusCode.FAILED_PRECONDITION, api.auth.SetAccountRole(
        auth_pb2.SetAccountRoleRequest(name=admin.name, role=auth_pb2.ROLE_MODERATOR), metadata=admin.md),
        "LAST_ADMIN")
    await checked(api, admin)  # still an admin, still signed in
    second = await new_admin(api)
    demoted = await api.auth.SetAccountRole(
        auth_pb2.SetAccountRoleRequest(name=admin.name, role=auth_pb2.ROLE_SUPPORT), metadata=admin.md)
    assert demoted.account.role == auth_pb2.ROLE_SUPPORT
    await expect(grpc.StatusCode.UNAUTHENTICATED, checked(api, admin), "SESSION_REVOKED")
    await checked(api, second)


async def test_on_the_real_profile_two_admins_demoting_each_other_leave_one(tmp_path, smtp_sink, s3_endpoint):
    """PostgreSQL, Redis, RabbitMQ: the admins' rows are locked, the revocation list is Redis's, and a suspended
    owner's pets are held by the pet service from auth's event."""
    emails = ["pg-admin-a@staff.example.com", "pg-admin-b@staff.example.com"]
    settings = real_settings(tmp_path, smtp_sink, s3_endpoint, admin_emails=emails)
    platform = await start_platform(settings)
    api = Api(platform, smtp_sink)
    try:
        a, b = [await api.signup_admin(e) for e in emails]
        outcomes = await asyncio.gather(*(api.auth.SetAccountRole(auth_pb2.SetAccountRoleRequest(
            name=target.name, role=auth_pb2.ROLE_USER), metadata=actor.md) for actor, target in ((a, b), (b, a))),
            return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert len(refused) == 1 and refused[0].code() in (grpc.StatusCode.FAILED_PRECONDITION,
                                                          grpc.StatusCode.UNAUTHENTICATED), outcomes
        winner = a if not isinstance(outcomes[0], grpc.aio.AioRpcError) else b
        left = await api.auth.ListAccounts(auth_pb2.ListAccountsRequest(role=auth_pb2.ROLE_ADMIN),
                                           metadata=winner.md)
        assert [x.name for x in left.accounts] == [winner.name]
        seller = await api.signup()
        pet = await create(api, seller, dog("Suspicious"))
        await set_status(api, winner, seller.name, auth_pb2.ACCOUNT_STATUS_SUSPENDED)
        await expect(grpc.StatusCode.UNAUTHENTICATED, checked(api, seller), "SESSION_REVOKED")
        await expect(grpc.StatusCode.PERMISSION_DENIED, api.auth.Login(
            auth_pb2.LoginRequest(email=seller.email, password=PASSWORD)), "ACCOUNT_SUSPENDED")

        async def held() -> bool:
            try:
                await api.pet.GetPet(pet_pb2.GetPetRequest(name=pet.name))
                return False
            except grpc.aio.AioRpcError as e:
                return e.code() == grpc.StatusCode.NOT_FOUND
        await until(held, what="the suspended owner's pet held")
    finally:
        await api.channel.close()
        consumers = list(getattr(platform.rt.bus, "consumers", []))
        await platform.stop(grace=1)
        await drop_real_state(settings, consumers)
