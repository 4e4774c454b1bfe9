"""The ES256 key that signs access tokens, and the JWKS that publishes it (and retired keys)."""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh.config import Settings


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(32, "big")).decode().rstrip("=")


def public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = key.public_numbers()
    jwk = {"crv": "P-256", "kty": "EC", "x": _b64(numbers.x), "y": _b64(numbers.y)}
    # RFC 7638 thumbprint: the kid changes exactly when the key does.
    thumb = hashlib.sha256(json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode()).digest()
    return {**jwk, "kid": base64.urlsafe_b64encode(thumb).decode().rstrip("="), "alg": "ES256", "use": "sig"}


class SigningKeys:
    def __init__(self, settings: Settings):
        pem = settings.jwt_private_key.get_secret_value().encode() if settings.jwt_private_key else _local_key(
            settings.data_dir / "jwt-signing-key.pem")
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("PETPLATFORM_JWT_PRIVATE_KEY must be an EC P-256 private key (PEM)")
        self.private_key = key
        current = public_jwk(key.public_key())
        self.kid = current["kid"]
        # Not checked like the current key: a retired key of another type fails inside public_jwk.
        retired = [public_jwk(cast(ec.EllipticCurvePublicKey, serialization.load_pem_public_key(p.encode())))
                   for p in settings.jwt_previous_public_keys]
        self.jwks = [current, *[k for k in retired if k["kid"] != self.kid]]


def _local_key(path: Path) -> bytes:
    """The embedded profile's key: made once, kept under the data dir so tokens survive restarts."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
    return path.read_bytes()
