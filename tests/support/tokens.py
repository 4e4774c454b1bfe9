"""Access tokens made by hand: signed with any key, and the bad ones every protocol must refuse alike."""
from __future__ import annotations

import datetime as dt

import jwt
from cryptography.hazmat.primitives.asymmetric import ec


def sign_token(claims: dict, key, kid: str, alg: str = "ES256") -> str:
    """A JWT shaped like the auth service's (an admin's, valid for 5 minutes), `claims` overriding."""
    now = dt.datetime.now(dt.timezone.utc)
    base = {"iss": "petplatform", "sub": "0" * 32, "sid": "1" * 32, "role": "admin", "iat": now,
            "exp": now + dt.timedelta(minutes=5)}
    return jwt.encode({**base, **claims}, key, algorithm=alg, headers={"kid": kid})


BAD_TOKENS = ["other-key", "expired", "garbage", "basic", "none-alg", "wrong-issuer", "missing", "empty-bearer"]


def bad_authorization(keys, case: str) -> tuple[str | None, str]:
    """(authorization header or None, the ErrorInfo reason it must get) for a bad-token case."""
    now = dt.datetime.now(dt.timezone.utc)
    return {
        "other-key": ("Bearer " + sign_token({}, ec.generate_private_key(ec.SECP256R1()), keys.kid),
                      "TOKEN_INVALID"),
        "expired": ("Bearer " + sign_token({"iat": now - dt.timedelta(hours=1),
                                            "exp": now - dt.timedelta(minutes=30)}, keys.private_key, keys.kid),
                    "TOKEN_EXPIRED"),
        "garbage": ("Bearer abc.def.ghi", "TOKEN_INVALID"),
        "basic": ("Basic dXNlcjpwYXNz", "TOKEN_INVALID"),
        "none-alg": ("Bearer " + jwt.encode({"sub": "x"}, None, algorithm="none", headers={"kid": keys.kid}),
                     "TOKEN_INVALID"),
        "wrong-issuer": ("Bearer " + sign_token({"iss": "evil"}, keys.private_key, keys.kid), "TOKEN_INVALID"),
        "missing": (None, "TOKEN_MISSING"),
        "empty-bearer": ("Bearer ", "TOKEN_INVALID"),
    }[case]
