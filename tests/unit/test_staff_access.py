"""Which roles each staff access level admits (the interceptor refuses the rest)."""
from __future__ import annotations

import pytest

from mesh.principal import Principal
from petplatform.common.v1 import access_pb2

ADMIN, MODERATOR, SUPPORT = access_pb2.ACCESS_ADMIN, access_pb2.ACCESS_MODERATOR, access_pb2.ACCESS_SUPPORT


@pytest.mark.parametrize(("role", "admitted"), [
    ("admin", {ADMIN, MODERATOR, SUPPORT}),
    ("moderator", {MODERATOR, SUPPORT}),
    ("support", {SUPPORT}),
    ("user", set()),
])
def test_staff_levels_admit_their_roles_with_a_second_factor(role, admitted):
    with_mfa = Principal(user_id="u", role=role, session_id="s", amr=("pwd", "mfa"))
    without = Principal(user_id="u", role=role, session_id="s", amr=("pwd",))
    assert {level for level in (ADMIN, MODERATOR, SUPPORT) if with_mfa.admitted(level)} == admitted
    assert not any(without.admitted(level) for level in (ADMIN, MODERATOR, SUPPORT)), "staff need the second factor"
    assert with_mfa.is_admin == (role == "admin")
