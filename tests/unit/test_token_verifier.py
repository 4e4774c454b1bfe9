"""TokenVerifier keeps the tokens it has verified (a stream of chat sends checks one signature once),
and a kept token is still refused once expired, revoked, or signed by a key no longer published."""
from __future__ import annotations

import datetime as dt
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mesh import errors
from mesh.cache import MemoryCache
from mesh.fanout import InProcessFanout
from mesh.principal import TokenVerifier
from mesh.revocation import Revocations
from tests.support.tokens import sign_token


@pytest.fixture
def keys():
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return key, {**jwk, "kid": "k1"}



async def test_a_kept_token_is_still_refused_when_expired_revoked_or_its_key_withdrawn(keys, monkeypatch):
    key, jwk = keys
    published = [jwk]

    async def jwks():
        return list(published)
    revocations = Revocations(MemoryCache(), InProcessFanout())
    verifier = TokenVerifier(jwks, revocations, issuer="petplatform", ttl=0, min_refetch=0)  # JWKS read on every use
    token = sign_token({"sid": "s" * 32}, key, "k1")
    decodes = []
    real_decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: decodes.append(1) or real_decode(*a, **k))
    for _ in range(3):
        assert (await verifier.verify(token)).session_id == "s" * 32
    assert len(decodes) == 1, "its signature is checked once"

    published.clear()  # the key is withdrawn (a rotation after a leak)
    with pytest.raises(errors.ApiError, match="unknown key"):
        await verifier.verify(token)
    published.append(jwk)

    await revocations.revoke("s" * 32, ttl_seconds=60)
    with pytest.raises(errors.ApiError, match="revoked"):
        await verifier.verify(token)

    # Past its expiry a kept token is checked whole again (and jwt.decode refuses it: TOKEN_EXPIRED).
    now = dt.datetime.now(dt.timezone.utc)
    short = sign_token({"sid": "t" * 32, "exp": now + dt.timedelta(seconds=1)}, key, "k1")
    assert (await verifier.verify(short)).session_id == "t" * 32
    before = len(decodes)
    monkeypatch.setattr("mesh.principal.time", type("Later", (), {"time": staticmethod(lambda: now.timestamp() + 60),
                                                                   "monotonic": staticmethod(lambda: 0.0)}))
    await verifier.verify(short)  # (the real clock says it is still valid)
    assert len(decodes) == before + 1
