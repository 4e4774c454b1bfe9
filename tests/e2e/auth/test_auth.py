"""AuthService through its public gRPC API on an in-process server."""
from __future__ import annotations

import asyncio
import collections
import datetime as dt
import re
import uuid

from google.rpc import error_details_pb2
import grpc
import jwt
import pytest
import sqlalchemy as sa

from petplatform.auth.v1 import auth_pb2
from petplatform.user.v1 import user_pb2
from services.auth.store import accounts, refresh_tokens, verification_tokens
from tests.support.errors import error_reason, expect, status_of, violations
from tests.support.platform import PASSWORD, Api, embedded_settings, module_of, start_platform
from tests.support.tokens import BAD_TOKENS, bad_authorization


def auth_module(api: Api):
    return module_of(api, "auth")


def new_email() -> str:
    return f"a{uuid.uuid4().hex[:12]}@example.com"


async def test_register_normalises_email_and_hashes_with_bcrypt_at_the_configured_cost(api: Api):
    local = uuid.uuid4().hex[:10]
    resp = await api.auth.Register(auth_pb2.RegisterRequest(
        email=f"  {local}@Example.COM ", password=PASSWORD, display_name=" Mia "))
    assert resp.account.email == f"{local}@example.com"
    assert resp.account.display_name == "Mia"
    assert not resp.account.email_verified and resp.account.role == auth_pb2.ROLE_USER
    async with auth_module(api).db.transaction() as s:
        stored = await s.scalar(sa.select(accounts.c.password_hash).where(accounts.c.email == f"{local}@example.com"))
    rounds = auth_module(api).rt.settings.bcrypt_rounds  # 12 by default (tests/unit); the tests run at 4
    assert stored.startswith(f"$2b${rounds:02d}$") and PASSWORD not in stored


NOTICE = "Someone tried to sign up with your email"


def mails(api: Api, to: str, subject: str) -> list:
    return [m for m in api.smtp.to(to) if m["Subject"] == subject]


async def wait_for_mail(api: Api, to: str, subject: str):
    for _ in range(200):
        if found := mails(api, to, subject):
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {subject!r} email to {to}")


async def mail_caught_up(api: Api) -> None:
    """Returns once every email asked for so far has been sent and every user.created published so far
    handled: each consumer takes its events in order, and the outbox relays in order, so a newcomer's
    verification email comes after all of them."""
    marker = await api.signup("Marker")
    await api.smtp.wait_for(marker.email)


def shape(account: auth_pb2.Account) -> list[str]:
    return [f.name for f, _ in account.ListFields()]


@pytest.mark.parametrize("variant", [str.upper, lambda e: e.title(),
                                     # full-width letters and at sign (NFKC folds them)
                                     lambda e: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in e)])
async def test_registering_a_taken_email_answers_as_a_new_account_and_tells_the_owner(api: Api, variant):
    owner = await api.signup("Owner")
    await api.smtp.wait_for(owner.email)  # the verification email
    fresh = (await api.auth.Register(auth_pb2.RegisterRequest(
        email=new_email(), password="another long passphrase", display_name="Taker"))).account
    taken = (await api.auth.Register(auth_pb2.RegisterRequest(
        email=variant(owner.email), password="another long passphrase", display_name="Taker"))).account
    # The same shape and the same kind of values as for an email nobody had...
    assert shape(taken) == shape(fresh)
    assert re.fullmatch(r"users/[0-9a-f]{32}", taken.name) and taken.name != owner.name
    assert (taken.email, taken.display_name, taken.email_verified, taken.role) == (
        owner.email, "Taker", False, auth_pb2.ROLE_USER)
    assert abs(taken.create_time.seconds - fresh.create_time.seconds) < 60
    # ...the owner hears of it, and nothing of the account changed.
    notice = await wait_for_mail(api, owner.email, NOTICE)
    assert "already has one" in notice.get_body(("plain",)).get_content()
    await api.auth.Login(auth_pb2.LoginRequest(email=owner.email, password=PASSWORD))
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.Login(auth_pb2.LoginRequest(
        email=owner.email, password="another long passphrase")))
    async with auth_module(api).db.transaction() as tx:
        rows = (await tx.execute(sa.select(accounts).where(accounts.c.email == owner.email))).all()
    assert [(r.id, r.display_name) for r in rows] == [(owner.user_id, "Owner")]


async def test_the_stand_in_account_names_nothing(api: Api):
    owner = await api.signup()
    taken = (await api.auth.Register(auth_pb2.RegisterRequest(
        email=owner.email, password="another long passphrase", display_name="Taker"))).account
    await wait_for_mail(api, owner.email, NOTICE)
    await expect(grpc.StatusCode.NOT_FOUND, api.user.GetUser(user_pb2.GetUserRequest(name=taken.name),
                                                             metadata=owner.md))


async def test_repeated_attempts_on_a_taken_email_send_one_notice_an_hour(api: Api):
    owner = await api.signup()
    for _ in range(3):
        await api.auth.Register(auth_pb2.RegisterRequest(
            email=owner.email, password="another long passphrase", display_name="Taker"))
    await wait_for_mail(api, owner.email, NOTICE)
    await mail_caught_up(api)
    assert len(mails(api, owner.email, NOTICE)) == 1


async def test_concurrent_registrations_of_one_email_make_one_account(api: Api):
    email = new_email()
    answers = await asyncio.gather(*(api.auth.Register(auth_pb2.RegisterRequest(
        email=email, password=PASSWORD, display_name=f"Racer {i}")) for i in range(3)))
    assert len({a.account.name for a in answers}) == 3
    async with auth_module(api).db.transaction() as tx:
        rows = (await tx.execute(sa.select(accounts).where(accounts.c.email == email))).all()
    assert len(rows) == 1 and f"users/{rows[0].id}" in {a.account.name for a in answers}
    await api.smtp.wait_for(email)
    await wait_for_mail(api, email, NOTICE)


@pytest.mark.parametrize("password, problem", [
    ("short12", "at least 8"),
    ("x" * 60 + "y" * 69, "at most 128"),
    ("password1", "too common"),
    ("qwertyuiop", "too common"),
    ("aaaaaaaaaaaa", "too common"),
])
async def test_password_rules(api: Api, password, problem):
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.auth.Register(auth_pb2.RegisterRequest(
        email=new_email(), password=password, display_name="P")))
    assert problem in violations(err)["password"]


async def test_no_composition_rules_and_long_passwords_count_whole(api: Api):
    # All lower case letters is fine (NIST: no composition rules); 128 characters are all significant.
    email = new_email()
    long_pw = "tangerine kayak " * 8
    await api.auth.Register(auth_pb2.RegisterRequest(email=email, password=long_pw, display_name="Long"))
    await api.auth.Login(auth_pb2.LoginRequest(email=email, password=long_pw))
    await expect(grpc.StatusCode.UNAUTHENTICATED,
                 api.auth.Login(auth_pb2.LoginRequest(email=email, password=long_pw[:-1] + "X")))


async def test_password_equal_to_email_is_refused(api: Api):
    email = new_email()
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.auth.Register(auth_pb2.RegisterRequest(
        email=email, password=email, display_name="Same")))
    assert "email or name" in violations(err)["password"]


async def test_register_bad_input_names_every_field(api: Api):
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.auth.Register(auth_pb2.RegisterRequest()),
                       "MISSING_FIELD")
    assert set(violations(err)) == {"email", "password", "display_name"}
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.auth.Register(auth_pb2.RegisterRequest(
        email="not-an-email", password=PASSWORD, display_name="x" * 65)))
    assert set(violations(err)) == {"email", "display_name"}


@pytest.mark.parametrize("name", ["Mallory\u202egnp.exe", "Zero\u200bWidth", "Two\nlines", "Private\ue000",
                                  "Admin", "\u0410DMIN", "ｓｕｐｐｏｒｔ", "r00t", "Pet Platform Team", "Mod-er-ator"])
async def test_register_refuses_hidden_characters_and_staff_names(api: Api, name):
    email = new_email()
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.auth.Register(auth_pb2.RegisterRequest(
        email=email, password=PASSWORD, display_name=name)))
    assert set(violations(err)) == {"display_name"}
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD)))


async def test_huge_and_malformed_bodies_are_client_errors(api: Api):
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, api.auth.Register(auth_pb2.RegisterRequest(
        email=new_email(), password=PASSWORD, display_name="x" * 1_000_000)))
    assert "display_name" in violations(err)
    await expect(grpc.StatusCode.RESOURCE_EXHAUSTED, api.auth.Register(auth_pb2.RegisterRequest(
        email=new_email(), password=PASSWORD, display_name="x" * 9_000_000)))
    raw = api.channel.unary_unary("/petplatform.auth.v1.AuthService/Login")
    await expect(grpc.StatusCode.INVALID_ARGUMENT, raw(b"\x0a\xff\xff\xff\xff"), "MALFORMED_REQUEST")
    # A field sent with the wrong wire type is not the field: the request is missing it.
    err = await expect(grpc.StatusCode.INVALID_ARGUMENT, raw(b"\x08\x01\x12\x03abc"), "MISSING_FIELD")
    assert "email" in violations(err)


async def test_login_issues_es256_jwt_matching_jwks(api: Api):
    s = await api.signup()
    jwks = (await api.auth.GetJwks(auth_pb2.GetJwksRequest())).keys
    assert jwks and jwks[0].alg == "ES256" and jwks[0].crv == "P-256"
    header = jwt.get_unverified_header(s.access_token)
    assert header["alg"] == "ES256" and header["kid"] == jwks[0].kid
    key = jwt.PyJWK({"kty": "EC", "crv": "P-256", "x": jwks[0].x, "y": jwks[0].y}).key
    claims = jwt.decode(s.access_token, key, algorithms=["ES256"], issuer="petplatform")
    assert claims["sub"] == s.user_id and claims["exp"] - claims["iat"] == 15 * 60
    assert "." not in s.refresh_token and len(s.refresh_token) >= 40  # opaque, not a JWT


async def test_unknown_email_and_wrong_password_look_the_same(api: Api):
    s = await api.signup()
    wrong = await expect(grpc.StatusCode.UNAUTHENTICATED,
                         api.auth.Login(auth_pb2.LoginRequest(email=s.email, password="not the password")))
    unknown = await expect(grpc.StatusCode.UNAUTHENTICATED,
                           api.auth.Login(auth_pb2.LoginRequest(email=new_email(), password="not the password")))
    assert wrong.details() == unknown.details()
    assert error_reason(wrong) == error_reason(unknown) == "INVALID_CREDENTIALS"


WRONG = "wrong password!"


def retry_seconds(err: grpc.aio.AioRpcError) -> int:
    for d in status_of(err).details:
        info = error_details_pb2.RetryInfo()
        if d.Unpack(info):
            return info.retry_delay.seconds
    raise AssertionError("RESOURCE_EXHAUSTED without RetryInfo")


async def login_from(api: Api, ip: str, email: str, password: str = WRONG) -> grpc.StatusCode:
    """Login's outcome for a client at `ip`; a refusal must say how long to wait."""
    try:
        await api.auth.Login(auth_pb2.LoginRequest(email=email, password=password),
                             metadata=api.from_address(ip))
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            assert error_reason(e) == "LOGIN_THROTTLED" and retry_seconds(e) >= 1
        return e.code()


async def throttled_wait(api: Api, ip: str, email: str, password: str = WRONG) -> int:
    err = await expect(grpc.StatusCode.RESOURCE_EXHAUSTED, api.auth.Login(
        auth_pb2.LoginRequest(email=email, password=password), metadata=api.from_address(ip)),
        "LOGIN_THROTTLED")
    return retry_seconds(err)


async def test_parallel_wrong_logins_check_only_the_free_attempts(api: Api):
    s = await api.signup()
    outcomes = await asyncio.gather(*(login_from(api, "203.0.113.20", s.email) for _ in range(20)))
    assert collections.Counter(outcomes) == {grpc.StatusCode.UNAUTHENTICATED: 5,
                                             grpc.StatusCode.RESOURCE_EXHAUSTED: 15}


async def test_parallel_logins_with_the_right_password_among_them(api: Api):
    s = await api.signup()
    passwords = [WRONG] * 6 + [PASSWORD] + [WRONG] * 5
    outcomes = collections.Counter(await asyncio.gather(
        *(login_from(api, "203.0.113.21", s.email, p) for p in passwords)))
    assert outcomes[grpc.StatusCode.OK] + outcomes[grpc.StatusCode.UNAUTHENTICATED] <= 5
    assert outcomes[grpc.StatusCode.RESOURCE_EXHAUSTED] >= 7


async def test_the_right_password_is_not_refused_for_its_own_slot(api: Api):
    s = await api.signup()
    for _ in range(2):  # and a success starts the address afresh
        for _ in range(4):
            assert await login_from(api, "203.0.113.22", s.email) == grpc.StatusCode.UNAUTHENTICATED
        assert await login_from(api, "203.0.113.22", s.email, PASSWORD) == grpc.StatusCode.OK


@pytest.fixture(scope="module")
async def short_gates(tmp_path_factory, smtp_sink):
    """The production back-off (1 s first), which the other tests stretch so that counts alone decide."""
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("short"), smtp_sink,
                                                      login_backoff_base_seconds=1))
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    await platform.stop(grace=1)


async def test_waiting_as_told_lets_the_owner_in(short_gates: Api):
    api = short_gates
    s = await api.signup()
    outcomes = await asyncio.gather(*(
        api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=WRONG),
                       metadata=api.from_address("203.0.113.23")) for _ in range(6)), return_exceptions=True)
    refused = [e for e in outcomes if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert len(refused) == 1
    await asyncio.sleep(retry_seconds(refused[0]))
    assert await login_from(api, "203.0.113.23", s.email, PASSWORD) == grpc.StatusCode.OK


async def test_many_failures_from_one_address_lock_nobody_out(api: Api):
    s = await api.signup()
    # A NAT: twenty people behind one address mistype their passwords.
    outcomes = await asyncio.gather(*(login_from(api, "198.51.100.30", new_email()) for _ in range(20)))
    assert set(outcomes) == {grpc.StatusCode.UNAUTHENTICATED}
    assert await login_from(api, "198.51.100.30", s.email, PASSWORD) == grpc.StatusCode.OK


# Small ceilings and gates far longer than a test, so every refusal below is decided by counts alone.
BACKOFF, SLOW = 30, 120
HOME = "198.51.100.9"  # where the owners below signed in before


@pytest.fixture(scope="module")
async def strict(tmp_path_factory, smtp_sink):
    platform = await start_platform(embedded_settings(
        tmp_path_factory.mktemp("strict"), smtp_sink, login_backoff_base_seconds=BACKOFF,
        login_max_failures_per_account=6, login_max_failures_per_ip=6, login_slow_interval_seconds=SLOW))
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    await platform.stop(grace=1)


async def test_failures_hold_back_their_address_even_with_the_right_password(strict: Api):
    s = await strict.signup()
    assert await login_from(strict, HOME, s.email, PASSWORD) == grpc.StatusCode.OK
    for _ in range(5):
        assert await login_from(strict, "203.0.113.40", s.email) == grpc.StatusCode.UNAUTHENTICATED
    assert 0 < await throttled_wait(strict, "203.0.113.40", s.email, PASSWORD) <= BACKOFF
    # The owner, at home, is not held back by someone else's guesses.
    assert await login_from(strict, HOME, s.email, PASSWORD) == grpc.StatusCode.OK


async def test_guesses_from_many_addresses_slow_the_account_but_never_lock_it(strict: Api):
    s = await strict.signup()
    assert await login_from(strict, HOME, s.email, PASSWORD) == grpc.StatusCode.OK
    for i in range(6):
        assert await login_from(strict, f"192.0.2.{i}", s.email) == grpc.StatusCode.UNAUTHENTICATED
    # Strangers to the account, and the owner on a new device, get one attempt per interval...
    assert 0 < await throttled_wait(strict, "192.0.2.100", s.email) <= SLOW
    assert 0 < await throttled_wait(strict, "192.0.2.101", s.email, PASSWORD) <= SLOW
    # ...while the owner from an address they signed in from is let in.
    assert await login_from(strict, HOME, s.email, PASSWORD) == grpc.StatusCode.OK


async def test_an_address_past_its_ceiling_still_lets_its_known_people_in(strict: Api):
    s = await strict.signup()
    assert await login_from(strict, "198.51.100.50", s.email, PASSWORD) == grpc.StatusCode.OK
    for _ in range(6):
        assert await login_from(strict, "198.51.100.50", new_email()) == grpc.StatusCode.UNAUTHENTICATED
    assert 0 < await throttled_wait(strict, "198.51.100.50", new_email()) <= SLOW
    assert await login_from(strict, "198.51.100.50", s.email, PASSWORD) == grpc.StatusCode.OK
    assert await login_from(strict, "198.51.100.51", new_email()) == grpc.StatusCode.UNAUTHENTICATED


async def test_refresh_rotates_and_reuse_revokes_the_family(api: Api):
    s = await api.signup()
    first = await api.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=s.refresh_token))
    assert first.refresh_token != s.refresh_token and first.access_token
    second = await api.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=first.refresh_token))
    # Replaying a rotated token (as a thief would) revokes every token of the login...
    await expect(grpc.StatusCode.UNAUTHENTICATED,
                 api.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=s.refresh_token)),
                 "REFRESH_TOKEN_REUSED")
    await expect(grpc.StatusCode.UNAUTHENTICATED,
                 api.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=second.refresh_token)),
                 "REFRESH_TOKEN_INVALID")
    # ...and its access tokens.
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.SendVerificationEmail(
        auth_pb2.SendVerificationEmailRequest(), metadata=(("authorization", f"Bearer {second.access_token}"),)),
        "SESSION_REVOKED")
    # Another login of the same user is untouched.
    other = await api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))
    await api.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=other.refresh_token))


async def test_concurrent_use_of_one_refresh_token_is_reuse(api: Api):
    s = await api.signup()
    results = await asyncio.gather(
        *(api.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=s.refresh_token)) for _ in range(4)),
        return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) <= 1


async def test_expired_and_unknown_refresh_tokens(api: Api):
    s = await api.signup()
    async with auth_module(api).db.transaction() as tx:
        await tx.execute(refresh_tokens.update().where(refresh_tokens.c.account_id == s.user_id).values(
            expire_time=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)))
    await expect(grpc.StatusCode.UNAUTHENTICATED,
                 api.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=s.refresh_token)),
                 "REFRESH_TOKEN_INVALID")
    await expect(grpc.StatusCode.UNAUTHENTICATED,
                 api.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token="made-up")), "REFRESH_TOKEN_INVALID")


async def test_logout_revokes_refresh_and_access_tokens(api: Api):
    s = await api.signup()
    await api.auth.SendVerificationEmail(auth_pb2.SendVerificationEmailRequest(), metadata=s.md)
    await api.auth.Logout(auth_pb2.LogoutRequest(refresh_token=s.refresh_token))
    await expect(grpc.StatusCode.UNAUTHENTICATED,
                 api.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=s.refresh_token)))
    await expect(grpc.StatusCode.UNAUTHENTICATED,
                 api.auth.SendVerificationEmail(auth_pb2.SendVerificationEmailRequest(), metadata=s.md),
                 "SESSION_REVOKED")
    await api.auth.Logout(auth_pb2.LogoutRequest(refresh_token="unknown"))  # reveals nothing


@pytest.mark.parametrize("case", BAD_TOKENS)
async def test_forged_expired_and_malformed_tokens(api: Api, case):
    header, reason = bad_authorization(auth_module(api).keys, case)
    md = (("authorization", header),) if header else None
    await expect(grpc.StatusCode.UNAUTHENTICATED,
                 api.auth.SendVerificationEmail(auth_pb2.SendVerificationEmailRequest(), metadata=md), reason)


async def test_email_verification_flow(api: Api):
    s = await api.signup()
    token = await api.smtp.verification_token(s.email)
    account = (await api.auth.VerifyEmail(auth_pb2.VerifyEmailRequest(token=token))).account
    assert account.email_verified and account.name == s.name
    await expect(grpc.StatusCode.FAILED_PRECONDITION, api.auth.VerifyEmail(auth_pb2.VerifyEmailRequest(token=token)),
                 "VERIFICATION_TOKEN_USED")
    await expect(grpc.StatusCode.INVALID_ARGUMENT, api.auth.VerifyEmail(auth_pb2.VerifyEmailRequest(token="nope")),
                 "VERIFICATION_TOKEN_INVALID")
    await expect(grpc.StatusCode.FAILED_PRECONDITION,
                 api.auth.SendVerificationEmail(auth_pb2.SendVerificationEmailRequest(), metadata=s.md),
                 "EMAIL_ALREADY_VERIFIED")


async def test_expired_verification_token(api: Api):
    s = await api.signup()
    token = await api.smtp.verification_token(s.email)
    async with auth_module(api).db.transaction() as tx:
        await tx.execute(verification_tokens.update().where(verification_tokens.c.account_id == s.user_id).values(
            expire_time=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)))
    await expect(grpc.StatusCode.FAILED_PRECONDITION, api.auth.VerifyEmail(auth_pb2.VerifyEmailRequest(token=token)),
                 "VERIFICATION_TOKEN_EXPIRED")


async def test_replayed_user_created_sends_one_verification(api: Api):
    s = await api.signup()
    await api.smtp.wait_for(s.email)
    db = auth_module(api).db
    from mesh.events.outbox import outbox
    async with db.transaction() as tx:
        bodies = (await tx.execute(sa.select(outbox.c.event_id, outbox.c.body).where(
            outbox.c.event_type == "user.created"))).all()
    event_id, body = next((i, b) for i, b in bodies if s.user_id.encode() in b)
    await api.platform.rt.bus.publish("user.created", body, event_id)
    await mail_caught_up(api)
    async with db.transaction() as tx:
        count = await tx.scalar(sa.select(sa.func.count()).select_from(verification_tokens).where(
            verification_tokens.c.account_id == s.user_id))
    assert count == 1
    assert len(api.smtp.to(s.email)) == 1


async def test_admin_emails_get_the_admin_role(tmp_path, smtp_sink):
    admin = new_email()
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink, admin_emails=[admin]))
    api = Api(platform, smtp_sink)
    try:
        account = (await api.auth.Register(auth_pb2.RegisterRequest(
            email=admin, password=PASSWORD, display_name="Site Operator"))).account
        assert account.role == auth_pb2.ROLE_ADMIN
    finally:
        await api.channel.close()
        await platform.stop(grace=1)


@pytest.mark.real
async def test_sessions_on_the_real_profile(real_api: Api):
    """PostgreSQL for accounts, Redis for throttling and revoked sessions, RabbitMQ for the emails."""
    s = await real_api.signup()
    assert await real_api.smtp.verification_token(s.email)
    rotated = await real_api.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=s.refresh_token))
    await expect(grpc.StatusCode.UNAUTHENTICATED,
                 real_api.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=s.refresh_token)),
                 "REFRESH_TOKEN_REUSED")
    await expect(grpc.StatusCode.UNAUTHENTICATED, real_api.auth.SendVerificationEmail(
        auth_pb2.SendVerificationEmailRequest(), metadata=(("authorization", f"Bearer {rotated.access_token}"),)),
        "SESSION_REVOKED")
    assert await login_from(real_api, "198.51.100.9", s.email, PASSWORD) == grpc.StatusCode.OK
    outcomes = await asyncio.gather(*(login_from(real_api, "203.0.113.60", s.email) for _ in range(20)))
    assert collections.Counter(outcomes) == {grpc.StatusCode.UNAUTHENTICATED: 5,
                                             grpc.StatusCode.RESOURCE_EXHAUSTED: 15}
    assert await login_from(real_api, "198.51.100.9", s.email, PASSWORD) == grpc.StatusCode.OK
