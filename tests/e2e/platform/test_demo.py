"""The demo data `make up` loads: its admin account is an admin."""
from __future__ import annotations

import json
import jwt
from google.protobuf import field_mask_pb2

from petplatform.auth.v1 import auth_pb2
from petplatform.user.v1 import user_pb2
from app import demo
from tests.support import REPO_ROOT
from tests.support.platform import Api, embedded_settings, start_platform


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
        admin = await api.auth.Login(auth_pb2.LoginRequest(email=demo.ADMIN_EMAIL, password=demo.PASSWORD))
        assert jwt.decode(admin.access_token, options={"verify_signature": False})["role"] == "admin"
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
