"""A signing-key rotation as operators do it, seen from an edge running on its own (`--target=edge`):
the auth service restarts with a new key and publishes the old one as retired; the edge keeps
accepting tokens of both, picks up the new key without a restart, and refuses keys never published."""
from __future__ import annotations

import asyncio

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
import jwt

from app import wiring
from mesh.server import Platform
from tests.support.platform import PASSWORD, embedded_settings, lone_edge
from tests.support.tokens import sign_token

MIN_REFETCH = 0.3


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


async def start(settings, port: int) -> Platform:
    platform = wiring.platform(settings, "all", port=port)
    await platform.migrate()
    await platform.start()
    return platform


async def test_edge_follows_a_signing_key_rotation(tmp_path, smtp_sink):
    import aiohttp
    old, new = new_key(), new_key()
    services = await start(embedded_settings(tmp_path / "svc", smtp_sink, jwt_private_key=pem(old)), 0)
    port = services.port
    edge = lone_edge(embedded_settings(tmp_path / "edge", smtp_sink, jwks_min_refetch_seconds=MIN_REFETCH),
                     f"127.0.0.1:{port}")
    edge_rt = edge.rt
    await edge.start(http_port=0, grpc_port=0)
    url = f"http://127.0.0.1:{edge.http_port}"
    try:
        async with aiohttp.ClientSession() as http:
            async def login() -> str:
                async with http.post(url + "/v1/auth/login", json={"email": "rot@example.com",
                                                                    "password": PASSWORD}) as r:
                    return (await r.json())["accessToken"]

            async def me(token: str) -> int:
                async with http.get(url + "/v1/users/me", headers={"Authorization": f"Bearer {token}"}) as r:
                    return r.status

            async with http.post(url + "/v1/auth/register", json={"email": "rot@example.com", "password": PASSWORD,
                                                                   "displayName": "Rotator"}) as r:
                assert r.status == 200
            before = await login()
            assert await me(before) == 200  # the edge now holds the old key

            # Rotation: the auth service comes back on the same address signing with the new key.
            await services.stop(grace=1)
            services = await start(embedded_settings(tmp_path / "svc", smtp_sink, jwt_private_key=pem(new),
                                                     jwt_previous_public_keys=[public_pem(old)]), port)
            after = await login()
            assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
            await asyncio.sleep(MIN_REFETCH)  # the last JWKS fetch may have been just now
            assert await me(after) == 200, "the new key is fetched on first sight of its kid"
            assert await me(before) == 200, "tokens of the retired key live out their 15 minutes"

            forged = sign_token({"sub": "x", "sid": "s"}, new_key(), "never-published")
            await asyncio.sleep(MIN_REFETCH)
            assert await me(forged) == 401
    finally:
        await edge.stop(grace=1)
        await edge_rt.close()
        await services.stop(grace=1)
