"""The demo data `make up` loads: its admin account is an admin, with the second factor admins need."""
from __future__ import annotations

import json

import grpc
import jwt
from google.protobuf import field_mask_pb2

from petplatform.auth.v1 import auth_pb2
from petplatform.user.v1 import user_pb2
from app import demo
from tests.support import REPO_ROOT
from tests.support.errors import expect
from tests.support.platform import Api, embedded_settings, start_platform, totp_code


def make_up_admin_emails() -> list[str]:
    """PETPLATFORM_ADMIN_EMAILS as the Makefile's `up` exports it."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    line = next(ln for ln in makefile.splitlines() if ln.startswith("up: export PETPLATFORM_ADMIN_EMAILS ?="))
    return json.loads(line.split("?=", 1)[1])


async def test_the_demo_admin_is_an_admin_under_make_up(tmp_path, smtp_sink):
    assert demo.ADMIN_EMAIL in make_up_admin_emails()
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink, admin_emails=make_up_admin_emails()))
    api = Api(platform, smtp_sink)
    try:
        await demo.load_demo_data(platform.address, tmp_path)
        first = await api.auth.Login(auth_pb2.LoginRequest(email=demo.ADMIN_EMAIL, password=demo.PASSWORD))
        assert first.mfa_challenge and not first.access_token  # the password alone is not enough
        secret = (tmp_path / demo.ADMIN_TOTP_FILE).read_text().strip()
        admin = await api.auth.VerifyMfa(auth_pb2.VerifyMfaRequest(mfa_challenge=first.mfa_challenge,
                                                                   code=totp_code(secret, ahead=1)))
        claims = jwt.decode(admin.access_token, options={"verify_signature": False})
        assert claims["role"] == "admin" and "mfa" in claims["amr"]
        # What only an admin may do: change someone else's profile.
        alice = await api.auth.Login(auth_pb2.LoginRequest(email=demo.USERS[0][0], password=demo.PASSWORD))
        me = (await api.user.GetUser(user_pb2.GetUserRequest(name="users/me"),
                                     metadata=(("authorization", f"Bearer {alice.access_token}"),))).user
        updated = (await api.user.UpdateUser(user_pb2.UpdateUserRequest(
            user=user_pb2.User(name=me.name, bio="Checked by the admin"),
            update_mask=field_mask_pb2.FieldMask(paths=["bio"])),
            metadata=(("authorization", f"Bearer {admin.access_token}"),))).user
        assert updated.bio == "Checked by the admin"
    finally:
        await api.channel.close()
        await platform.stop(grace=1)


async def test_an_admin_without_the_second_factor_acts_as_an_ordinary_user(tmp_path, smtp_sink):
    admin_email = "operator@example.com"
    platform = await start_platform(embedded_settings(tmp_path, smtp_sink, admin_emails=[admin_email]))
    api = Api(platform, smtp_sink)
    try:
        bare = await api.signup("Operator", admin_email)  # admin role, password only
        other = await api.signup("Someone")
        change = user_pb2.UpdateUserRequest(user=user_pb2.User(name=other.name, bio="Changed"),
                                            update_mask=field_mask_pb2.FieldMask(paths=["bio"]))
        await expect(grpc.StatusCode.PERMISSION_DENIED, api.user.UpdateUser(change, metadata=bare.md))
        verifier = platform.rt.verifier
        assert not (await verifier.verify(bare.access_token)).is_admin
        secret, _ = await api.enroll_mfa(bare)
        admin = await api.login_with_code(admin_email, totp_code(secret, ahead=1))
        assert (await verifier.verify(admin.access_token)).is_admin
        assert (await api.user.UpdateUser(change, metadata=admin.md)).user.bio == "Changed"
    finally:
        await api.channel.close()
        await platform.stop(grace=1)
