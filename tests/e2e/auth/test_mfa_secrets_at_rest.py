"""TOTP secrets are stored sealed (AES-256-GCM, the key's id beside each, the account as associated data):
what the database holds, rows from before the change, key rotation, and a key that is missing."""
from __future__ import annotations

import base64
import logging
import os

import grpc

from petplatform.auth.v1 import auth_pb2
from services.auth import store
from services.auth.secret_box import key_id
from tests.support.errors import expect
from tests.support.platform import Api, Session, embedded_settings, module_of, start_platform, totp_code


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


async def stored(api: Api, session: Session):
    async with module_of(api, "auth").db.read() as s:
        return await store.find_mfa(s, session.user_id)


async def write_row(api: Api, session: Session, **values) -> None:
    async with module_of(api, "auth").db.transaction() as s:
        await s.execute(store.mfa_factors.update().where(
            store.mfa_factors.c.account_id == session.user_id).values(**values))


async def challenge(api: Api, session: Session) -> str:
    return (await api.auth.Login(auth_pb2.LoginRequest(email=session.email, password="correct horse battery staple"))
            ).mfa_challenge


async def test_the_database_holds_no_secret_and_two_factor_still_works(api: Api):
    s = await api.signup()
    start = await api.auth.StartMfaEnrollment(auth_pb2.StartMfaEnrollmentRequest(), metadata=s.md)
    pending = await stored(api, s)
    assert start.secret not in pending.secret and pending.secret_key_id == module_of(api, "auth").secret_box.key_id
    await api.auth.ConfirmMfaEnrollment(auth_pb2.ConfirmMfaEnrollmentRequest(code=totp_code(start.secret)),
                                        metadata=s.md)
    row = await stored(api, s)
    assert row.confirm_time is not None and start.secret not in row.secret
    # A wrong code is still just wrong; the right one signs in.
    await expect(grpc.StatusCode.UNAUTHENTICATED, api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(
        mfa_challenge=await challenge(api, s), code="000000" if totp_code(start.secret, 1) != "000000" else "111111")),
        "MFA_CODE_INVALID")
    await api.login_with_code(s.email, totp_code(start.secret, ahead=1))
    # Sealing twice gives two ciphertexts (a fresh nonce each time).
    again = await api.signup()
    second = await api.auth.StartMfaEnrollment(auth_pb2.StartMfaEnrollmentRequest(), metadata=again.md)
    assert (await stored(api, again)).secret != pending.secret and second.secret != start.secret


async def test_a_secret_moved_to_another_account_does_not_open_and_the_client_is_told_clearly(api: Api, caplog):
    victim, attacker = await api.signup(), await api.signup()
    attacker_secret, _ = await api.enroll_mfa(attacker)
    _, victim_codes = await api.enroll_mfa(victim)
    # Someone with write access to the table copies their own sealed secret onto the victim's row, to sign
    # in as the victim with their own authenticator: the account id bound into the ciphertext refuses it.
    mine = await stored(api, attacker)
    await write_row(api, victim, secret=mine.secret, secret_key_id=mine.secret_key_id)
    with caplog.at_level(logging.ERROR, logger="services.auth.api"):
        err = await expect(grpc.StatusCode.FAILED_PRECONDITION, api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(
            mfa_challenge=await challenge(api, victim), code=totp_code(attacker_secret, ahead=1))),
            "MFA_SECRET_UNAVAILABLE")
    assert "recovery code" in err.details()
    assert any(f"users/{victim.user_id}" in r.getMessage() and "unreadable" in r.getMessage() for r in caplog.records)
    # The person is not locked out: recovery codes need no key.
    answer = await api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(mfa_challenge=await challenge(api, victim),
                                                                code=victim_codes[0]))
    assert answer.access_token and answer.recovery_code_used


async def test_old_plaintext_rows_and_key_rotation(tmp_path, smtp_sink):
    first, second, third = new_key(), new_key(), new_key()
    settings = embedded_settings(tmp_path, smtp_sink, mfa_encryption_key=first)
    platform = await start_platform(settings)
    try:
        api = Api(platform, smtp_sink)
        sealed, legacy, legacy_later, stranded = [await api.signup() for _ in range(4)]
        secrets = {s.user_id: (await api.enroll_mfa(s)) for s in (sealed, legacy, legacy_later, stranded)}
        # Rows as the version before this one wrote them: the secret in plaintext, no key id.
        for s in (legacy, legacy_later):
            await write_row(api, s, secret=secrets[s.user_id][0], secret_key_id=None)
        await api.login_with_code(legacy.email, totp_code(secrets[legacy.user_id][0], ahead=1))  # read as it is
        assert (await stored(api, sealed)).secret_key_id == key_id(base64.b64decode(first))
        await api.channel.close()
    finally:
        await platform.stop(grace=0)

    # A new key, the first kept as a previous one: at start every row is sealed with the new key...
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink, mfa_encryption_key=second,
                                                      mfa_previous_encryption_keys=[first]))
    try:
        api = Api(platform, smtp_sink)
        for s in (sealed, legacy, legacy_later, stranded):
            row = await stored(api, s)
            assert row.secret_key_id == key_id(base64.b64decode(second)) and secrets[s.user_id][0] not in row.secret
        # ...and still opens: the one sealed with the first key, and the one that was plaintext.
        await api.login_with_code(sealed.email, totp_code(secrets[sealed.user_id][0], ahead=1))
        await api.login_with_code(legacy_later.email, totp_code(secrets[legacy_later.user_id][0], ahead=1))
        await api.channel.close()
    finally:
        await platform.stop(grace=0)

    # The operator drops every key in use: codes cannot be checked, which the client is told (not INTERNAL),
    # and the recovery codes still let the person in.
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink, mfa_encryption_key=third))
    try:
        api = Api(platform, smtp_sink)
        await expect(grpc.StatusCode.FAILED_PRECONDITION, api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(
            mfa_challenge=await challenge(api, stranded), code=totp_code(secrets[stranded.user_id][0], ahead=1))),
            "MFA_SECRET_UNAVAILABLE")
        answer = await api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(
            mfa_challenge=await challenge(api, stranded), code=secrets[stranded.user_id][1][0]))
        assert answer.access_token
        # The row is left as it was (sealed with the second key) for when the key comes back.
        assert (await stored(api, stranded)).secret_key_id == key_id(base64.b64decode(second))
        await api.channel.close()
    finally:
        await platform.stop(grace=0)


def test_keys_must_be_32_bytes_and_the_real_profile_needs_one(tmp_path):
    import pytest

    from mesh.config import ConfigError, load_settings
    for bad in ("short", base64.b64encode(b"x" * 16).decode(), "not base64 at all!" * 3):
        with pytest.raises(ConfigError, match="PETPLATFORM_MFA_ENCRYPTION_KEY"):
            load_settings(mfa_encryption_key=bad)
    with pytest.raises(ConfigError, match="PETPLATFORM_MFA_PREVIOUS_ENCRYPTION_KEYS"):
        load_settings(mfa_previous_encryption_keys=["short"])
    real = dict(profile="real", database_url="x", amqp_url="x", redis_url="x", s3_endpoint="x", edge_key="e" * 32,
                page_token_key="p" * 32)
    with pytest.raises(ConfigError, match="PETPLATFORM_MFA_ENCRYPTION_KEY"):
        load_settings(**real)
    assert load_settings(**real, mfa_encryption_key=new_key()).mfa_encryption_key
