"""An edge in a process of its own (its own Redis connections, as a separate pod has) refuses a session
revoked by the auth service of another process promptly, and checks revocations from memory: no Redis
read per call in the steady state."""
from __future__ import annotations

from collections import Counter

import grpc
import pytest

from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc
from tests.support.errors import error_reason
from tests.support.matching import until
from tests.support.platform import PASSWORD, Api, Session, lone_edge

pytestmark = pytest.mark.real


async def test_a_session_revoked_elsewhere_is_refused_by_the_edge_without_a_read_per_call(real_api: Api,
                                                                                          monkeypatch):
    platform = real_api.platform
    edge = lone_edge(platform.settings, platform.address)
    reads: Counter = Counter()
    real_get = edge.rt.cache.get

    async def counted_get(key: str) -> bytes | None:
        reads[key.split(":")[0]] += 1
        return await real_get(key)
    monkeypatch.setattr(edge.rt.cache, "get", counted_get)
    await edge.start(http_port=0, grpc_port=0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{edge.grpc_port}")
    try:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        s = await real_api.signup()
        tokens = await real_api.auth.Login(auth_pb2.LoginRequest(email=s.email, password=PASSWORD))
        other = Session(s.user_id, s.email, tokens.access_token, tokens.refresh_token)

        def sessions(session: Session):
            return auth.ListSessions(auth_pb2.ListSessionsRequest(parent=session.name), metadata=session.md)

        async def from_memory() -> bool:
            before = reads["revoked-session"]
            await sessions(other)
            return reads["revoked-session"] == before
        await until(from_memory, what="the edge checking revocations from memory")
        for _ in range(20):
            await sessions(other)
        revoked_before = reads["revoked-session"]

        await real_api.auth.RevokeSession(auth_pb2.RevokeSessionRequest(name=f"{s.name}/sessions/-"),
                                          metadata=s.md)

        async def refused() -> bool:
            try:
                await sessions(other)
            except grpc.aio.AioRpcError as e:
                return error_reason(e) == "SESSION_REVOKED"
            return False
        await until(refused, what="the edge refusing the revoked session")
        assert len((await sessions(s)).sessions) == 1  # the caller's own session goes on
        assert reads["revoked-session"] == revoked_before, "no per-call Redis read in the steady state"
    finally:
        await channel.close()
        await edge.stop(grace=1)
        await edge.rt.close()
