"""Sign-in with Google, Apple and LINE through the public gRPC API: each provider's ID-token rules, checked
with tokens minted by the local OpenID provider (the adapters' key URIs point at it; issuers and audiences
are the providers' own), account creation, safe linking and unlinking."""
from __future__ import annotations

import uuid

from cryptography.hazmat.primitives.asymmetric import ec, rsa
import grpc
import jwt
import pytest
import sqlalchemy as sa

from gateway.dev_oidc import LocalOpenIdProvider
from petplatform.admin.v1 import events_pb2 as admin_events
from petplatform.auth.v1 import auth_pb2
from petplatform.user.v1 import user_pb2
from services.auth.store import accounts, provider_links
from tests.support.errors import error_reason, expect
from tests.support.events import Producer
from tests.support.matching import until
from tests.support.platform import PASSWORD, Api, embedded_settings, module_of, start_platform, totp_code

GOOGLE = "https://accounts.google.com"
APPLE = "https://appleid.apple.com"
LINE = "https://access.line.me"
LINE_CHANNEL, LINE_SECRET = "1650000000", "line-channel-secret-0123456789abcdef"
IOS, ANDROID, WEB = auth_pb2.CLIENT_PLATFORM_IOS, auth_pb2.CLIENT_PLATFORM_ANDROID, auth_pb2.CLIENT_PLATFORM_WEB


def provider_settings(local: LocalOpenIdProvider) -> dict:
    here = {"jwks_uri": f"{local.issuer}/jwks", "token_endpoint": f"{local.issuer}/token",
            "authorization_endpoint": f"{local.issuer}/authorize"}
    return {"google": {"client_ids": {"web": "g-web", "ios": "g-ios", "android": "g-android"}, **here},
            "apple": {"client_ids": {"web": "com.example.web", "ios": "com.example.app"}, **here},
            "line": {"client_ids": {"web": LINE_CHANNEL, "ios": LINE_CHANNEL, "android": LINE_CHANNEL},
                     "client_secret": LINE_SECRET, **here}}


@pytest.fixture(scope="module")
async def local_idp():
    idp = LocalOpenIdProvider()
    await idp.start()
    yield idp
    await idp.stop()


@pytest.fixture(scope="module")
async def api(tmp_path_factory, smtp_sink, local_idp):
    platform = await start_platform(embedded_settings(
        tmp_path_factory.mktemp("providers"), smtp_sink, oauth_providers=provider_settings(local_idp),
        jwks_min_refetch_seconds=0))
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    await platform.stop(grace=1)


def person() -> dict:
    tag = uuid.uuid4().hex[:10]
    return {"sub": f"sub-{tag}", "email": f"p{tag}@example.com"}


def google(idp: LocalOpenIdProvider, who: dict, nonce: str = "n-1", **claims) -> str:
    return idp.mint({"iss": GOOGLE, "aud": "g-ios", "email_verified": True, "name": "Gina Google", "nonce": nonce,
                     **who, **claims})


def sign_in(api: Api, provider: str, token: str, nonce: str = "n-1", platform=IOS, **kw):
    return api.auth.SignInWithProvider(auth_pb2.SignInWithProviderRequest(
        provider=provider, id_token=token, nonce=nonce, platform=platform, **kw))


async def linked(api: Api, provider: str, subject: str):
    async with module_of(api, "auth").db.read() as s:
        return (await s.execute(sa.select(provider_links).where(provider_links.c.provider == provider,
                                                                provider_links.c.subject == subject))).first()


async def test_a_new_person_gets_an_account_and_the_same_one_next_time(api: Api, local_idp):
    who = person()
    first = await sign_in(api, "google", google(local_idp, who))
    assert first.account_created and first.access_token and first.refresh_token
    assert (first.account.email, first.account.email_verified, first.account.display_name) == (
        who["email"], True, "Gina Google")
    claims = jwt.decode(first.access_token, options={"verify_signature": False})
    assert claims["amr"] == ["fed"] and claims["sub"] == first.account.name.split("/")[1]
    again = await sign_in(api, "google", google(local_idp, who, nonce="n-2"), nonce="n-2")
    assert not again.account_created and again.account.name == first.account.name
    # user.created made the profile, as for a registration; the provider's word verified the email.
    md = (("authorization", f"Bearer {first.access_token}"),)
    for _ in range(100):
        try:
            profile = (await api.user.GetUser(user_pb2.GetUserRequest(name=first.account.name), metadata=md)).user
            break
        except grpc.aio.AioRpcError:
            import asyncio
            await asyncio.sleep(0.05)
    assert profile.display_name == "Gina Google"
    listed = await api.auth.ListSessions(auth_pb2.ListSessionsRequest(parent=first.account.name), metadata=md)
    assert listed.sessions[0].sign_in_method == "provider:google"


def stranger_rsa():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("case, reason", [
    ("forged", "ID_TOKEN_INVALID"), ("unknown-key", "ID_TOKEN_UNKNOWN_KEY"), ("expired", "ID_TOKEN_EXPIRED"),
    ("wrong-audience", "ID_TOKEN_WRONG_AUDIENCE"), ("other-platform", "ID_TOKEN_WRONG_AUDIENCE"),
    ("wrong-issuer", "ID_TOKEN_WRONG_ISSUER"), ("nonce-mismatch", "ID_TOKEN_NONCE_MISMATCH"),
    ("no-nonce", "NONCE_MISSING"), ("hs256", "ID_TOKEN_INVALID"), ("garbage", "ID_TOKEN_MALFORMED"),
    ("no-sub", "ID_TOKEN_INVALID"), ("future", "ID_TOKEN_INVALID"), ("other-azp", "ID_TOKEN_WRONG_AUDIENCE"),
])
async def test_a_bad_google_token_is_refused_and_creates_nothing(api: Api, local_idp, case, reason):
    who = person()
    nonce = "n-1"
    token = {
        "forged": lambda: local_idp.mint({"iss": GOOGLE, "aud": "g-ios", "nonce": nonce, **who},
                                         key=stranger_rsa(), kid=local_idp.kids["RS256"]),
        "unknown-key": lambda: local_idp.mint({"iss": GOOGLE, "aud": "g-ios", "nonce": nonce, **who},
                                              key=stranger_rsa(), kid="not-published"),
        "expired": lambda: google(local_idp, who, iat=1_600_000_000, exp=1_600_000_600),
        "wrong-audience": lambda: google(local_idp, who, aud="someone-elses-app"),
        "other-platform": lambda: google(local_idp, who, aud="g-web"),  # presented by the iOS app
        "wrong-issuer": lambda: google(local_idp, who, iss="https://evil.example"),
        "nonce-mismatch": lambda: google(local_idp, who, nonce="another"),
        "no-nonce": lambda: google(local_idp, who),
        "hs256": lambda: local_idp.mint({"iss": GOOGLE, "aud": "g-ios", "nonce": nonce, **who}, alg="HS256",
                                        key="g-ios-guessable-secret-of-32-bytes"),
        "garbage": lambda: "not.a.jwt",
        "no-sub": lambda: google(local_idp, who, sub=None),
        "future": lambda: google(local_idp, who, iat=4_000_000_000, exp=4_000_000_600),
        "other-azp": lambda: google(local_idp, who, azp="someone-elses-app"),
    }[case]()
    await expect(grpc.StatusCode.UNAUTHENTICATED,
                 sign_in(api, "google", token, nonce="" if case == "no-nonce" else nonce), reason)
    assert await linked(api, "google", who["sub"]) is None
    async with module_of(api, "auth").db.read() as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(accounts).where(
            accounts.c.email == who["email"])) == 0


async def test_an_id_token_is_accepted_once(api: Api, local_idp):
    token = google(local_idp, person())
    await sign_in(api, "google", token)
    await expect(grpc.StatusCode.UNAUTHENTICATED, sign_in(api, "google", token), "ID_TOKEN_REPLAYED")


async def test_google_issuer_spellings_hashed_nonce_and_android_audience(api: Api, local_idp):
    import hashlib
    hashed = hashlib.sha256(b"raw-nonce").hexdigest()
    token = google(local_idp, person(), iss="accounts.google.com", nonce=hashed)
    assert (await sign_in(api, "google", token, nonce="raw-nonce")).account_created
    # On Android the token names our server's (web) client id, and the app as azp.
    token = google(local_idp, person(), aud="g-web", azp="g-android")
    assert (await sign_in(api, "google", token, platform=ANDROID)).access_token


async def test_a_rotated_provider_key_is_fetched_when_first_seen(api: Api, local_idp):
    await sign_in(api, "google", google(local_idp, person()))  # the key set is cached now
    key, kid = local_idp.add_key()
    token = local_idp.mint({"iss": GOOGLE, "aud": "g-ios", "nonce": "n-1", "email_verified": True, **person()},
                           key=key, kid=kid)
    assert (await sign_in(api, "google", token)).access_token


async def test_apple_private_relay_email_and_the_name_given_once(api: Api, local_idp):
    tag = uuid.uuid4().hex[:10]
    who = {"sub": f"001234.{tag}", "email": f"{tag}@privaterelay.appleid.com"}
    claims = {"iss": APPLE, "aud": "com.example.app", "email_verified": "true", "is_private_email": "true",
              "nonce": "n-1", **who}
    first = await sign_in(api, "apple", local_idp.mint(claims), display_name="Ada Apple")
    assert first.account_created and first.account.email == who["email"] and first.account.email_verified
    assert first.account.display_name == "Ada Apple"
    later = await sign_in(api, "apple", local_idp.mint({**claims, "nonce": "n-2"}), nonce="n-2",
                          display_name="Someone Else")
    assert later.account.name == first.account.name and later.account.display_name == "Ada Apple"
    # Apple's web client is the Services id; the app's bundle id is not accepted from the web.
    await expect(grpc.StatusCode.UNAUTHENTICATED, sign_in(api, "apple", local_idp.mint(
        {**claims, "nonce": "n-3"}), nonce="n-3", platform=WEB), "ID_TOKEN_WRONG_AUDIENCE")
    await expect(grpc.StatusCode.UNAUTHENTICATED, sign_in(api, "apple", local_idp.mint(
        {**claims, "iss": GOOGLE, "nonce": "n-4"}), nonce="n-4"), "ID_TOKEN_WRONG_ISSUER")


async def test_line_web_tokens_use_the_channel_secret_and_app_tokens_its_keys(api: Api, local_idp):
    who = person()
    claims = {"iss": LINE, "aud": LINE_CHANNEL, "nonce": "n-1", "name": "Lin Line", "amr": ["linesso"], **who}
    web = await sign_in(api, "line", local_idp.mint(claims, alg="HS256", key=LINE_SECRET), platform=WEB)
    assert web.account_created
    # LINE vouches for no email: the account is made without one (and so takes over nobody's).
    assert web.account.email == "" and not web.account.email_verified
    app = await sign_in(api, "line", local_idp.mint({**claims, "nonce": "n-2"}, alg="ES256"), nonce="n-2",
                        platform=ANDROID)
    assert app.account.name == web.account.name
    await expect(grpc.StatusCode.UNAUTHENTICATED, sign_in(api, "line", local_idp.mint(
        {**claims, "nonce": "n-3"}, alg="HS256", key="not-the-channel-secret-0123456789ab"), nonce="n-3",
        platform=WEB), "ID_TOKEN_INVALID")
    await expect(grpc.StatusCode.UNAUTHENTICATED, sign_in(api, "line", local_idp.mint(
        {**claims, "nonce": "n-4"}, alg="ES256", key=ec.generate_private_key(ec.SECP256R1())), nonce="n-4",
        platform=ANDROID), "ID_TOKEN_INVALID")


async def test_an_existing_email_is_never_taken_over_by_a_provider_sign_in(api: Api, local_idp):
    # Someone registered the address with a password (perhaps an attacker, before its owner came).
    owner = await api.signup("Paula Password")
    who = {"sub": f"sub-{uuid.uuid4().hex[:8]}", "email": owner.email}
    await expect(grpc.StatusCode.FAILED_PRECONDITION, sign_in(api, "google", google(local_idp, who)),
                 "ACCOUNT_EXISTS")
    assert await linked(api, "google", who["sub"]) is None
    # The account's own proof (signed in with its password) links it; then the provider signs in there.
    link = await api.auth.LinkProvider(auth_pb2.LinkProviderRequest(
        provider="google", id_token=google(local_idp, who, nonce="n-2"), nonce="n-2", platform=IOS),
        metadata=owner.md)
    assert link.link.provider == "google" and link.link.email == owner.email
    await api.smtp.wait_for_subject(owner.email, "Google sign-in was linked")
    again = await sign_in(api, "google", google(local_idp, who, nonce="n-3"), nonce="n-3")
    assert again.account.name == owner.name and not again.account_created
    # That identity cannot be linked to anyone else.
    other = await api.signup()
    await expect(grpc.StatusCode.ALREADY_EXISTS, api.auth.LinkProvider(auth_pb2.LinkProviderRequest(
        provider="google", id_token=google(local_idp, who, nonce="n-4"), nonce="n-4", platform=IOS),
        metadata=other.md))
    # With the password left, the link can go; a bad token links nothing.
    await api.auth.UnlinkProvider(auth_pb2.UnlinkProviderRequest(provider="google"), metadata=owner.md)
    await expect(grpc.StatusCode.NOT_FOUND, api.auth.UnlinkProvider(
        auth_pb2.UnlinkProviderRequest(provider="google"), metadata=owner.md))
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.LinkProvider(auth_pb2.LinkProviderRequest(
        provider="google", id_token=google(local_idp, who, nonce="x"), nonce="n-5"), metadata=owner.md),
        "ID_TOKEN_NONCE_MISMATCH")


async def test_the_last_way_to_sign_in_cannot_be_removed(api: Api, local_idp):
    first = await sign_in(api, "google", google(local_idp, person()))
    md = (("authorization", f"Bearer {first.access_token}"),)
    await expect(grpc.StatusCode.FAILED_PRECONDITION, api.auth.UnlinkProvider(
        auth_pb2.UnlinkProviderRequest(provider="google"), metadata=md), "LAST_SIGN_IN_METHOD")
    # With a second provider linked, either may go (but not both).
    line = {"iss": LINE, "aud": LINE_CHANNEL, "nonce": "n-9", "sub": f"U{uuid.uuid4().hex}"}
    await api.auth.LinkProvider(auth_pb2.LinkProviderRequest(
        provider="line", id_token=local_idp.mint(line, alg="ES256"), nonce="n-9", platform=IOS), metadata=md)
    await api.auth.UnlinkProvider(auth_pb2.UnlinkProviderRequest(provider="google"), metadata=md)
    await expect(grpc.StatusCode.FAILED_PRECONDITION, api.auth.UnlinkProvider(
        auth_pb2.UnlinkProviderRequest(provider="line"), metadata=md), "LAST_SIGN_IN_METHOD")
    # No password: a provider account cannot sign in with one.
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.Login(auth_pb2.LoginRequest(
        email=first.account.email, password=PASSWORD)), "INVALID_CREDENTIALS")


async def test_a_provider_sign_in_asks_for_the_second_factor_when_it_is_on(api: Api, local_idp):
    who = person()
    first = await sign_in(api, "google", google(local_idp, who))
    from tests.support.platform import Session
    session = Session(first.account.name.split("/")[1], who["email"], first.access_token, first.refresh_token)
    secret, _ = await api.enroll_mfa(session)
    again = await sign_in(api, "google", google(local_idp, who, nonce="n-2"), nonce="n-2")
    assert again.mfa_challenge and not again.access_token
    done = await api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(mfa_challenge=again.mfa_challenge,
                                                              code=totp_code(secret, ahead=1)))
    assert jwt.decode(done.access_token, options={"verify_signature": False})["amr"] == ["fed", "otp", "mfa"]


async def test_provider_bad_input(api: Api, local_idp):
    await expect(grpc.StatusCode.INVALID_ARGUMENT, sign_in(api, "myspace", "x"), "PROVIDER_UNKNOWN")
    await expect(grpc.StatusCode.INVALID_ARGUMENT, api.auth.SignInWithProvider(
        auth_pb2.SignInWithProviderRequest(provider="google")), "MISSING_FIELD")
    await expect(grpc.StatusCode.INVALID_ARGUMENT, api.auth.SignInWithProvider(auth_pb2.SignInWithProviderRequest(
        provider="google", authorization_code="c")))
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.SignInWithProvider(auth_pb2.SignInWithProviderRequest(
        provider="google", authorization_code="made-up", code_verifier="v" * 43, redirect_uri="http://x/cb",
        nonce="n")), "AUTHORIZATION_CODE_INVALID")
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.LinkProvider(auth_pb2.LinkProviderRequest(
        provider="google", id_token="x")))


async def test_a_suspended_account_cannot_sign_in_with_its_provider(api: Api, local_idp, tmp_path):
    who = person()
    first = await sign_in(api, "google", google(local_idp, who))
    md = (("authorization", f"Bearer {first.access_token}"),)
    producer = await Producer.open("admin", api.platform.rt.bus, tmp_path)
    Action = admin_events.ModerationActionTaken
    await producer.emit(Action(case="cases/p1", subject=first.account.name, user=first.account.name,
                               action=Action.ACTION_SUSPEND_USER, reason="scam"))
    await producer.close()

    async def revoked() -> bool:
        try:
            await api.auth.ListSessions(auth_pb2.ListSessionsRequest(parent=first.account.name), metadata=md)
            return False
        except grpc.aio.AioRpcError as e:
            return error_reason(e) == "SESSION_REVOKED"
    await until(revoked, what="the suspension ending the provider session")
    await expect(grpc.StatusCode.PERMISSION_DENIED, sign_in(api, "google", google(local_idp, who, nonce="n-3"),
                                                            nonce="n-3"), "ACCOUNT_SUSPENDED")
