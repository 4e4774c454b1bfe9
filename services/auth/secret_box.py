"""TOTP secrets at rest: AES-256-GCM under a key from the settings, with the key's id stored beside each
ciphertext (so keys rotate: new secrets use the current key, any configured key reads) and the account id
as associated data (a ciphertext copied to another account's row does not open)."""
from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mesh.config import Settings, local_secret

NONCE_BYTES = 12


class SecretUnreadable(Exception):
    """A stored secret no configured key opens: its key was dropped from the settings, or the row was
    tampered with or moved. An operator's matter; the message names the key id, never the secret."""


def key_id(key: bytes) -> str:
    # Derived from the key, like a JWK thumbprint: nothing to name or keep in step by hand.
    return hashlib.sha256(b"petplatform-mfa-key\0" + key).hexdigest()[:16]


class SecretBox:
    def __init__(self, settings: Settings):
        current = (base64.b64decode(settings.mfa_encryption_key.get_secret_value())
                   if settings.mfa_encryption_key else _local_key(settings))
        self.key_id = key_id(current)
        self._keys = {key_id(k): AESGCM(k) for k in
                      [base64.b64decode(p.get_secret_value()) for p in settings.mfa_previous_encryption_keys]}
        self._keys[self.key_id] = AESGCM(current)

    def seal(self, *, account_id: str, secret: str) -> tuple[str, str]:
        """(key id, ciphertext as base64 of nonce + ciphertext + tag) of `secret`, under the current key."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.key_id].encrypt(nonce, secret.encode(), _associated(account_id))
        return self.key_id, base64.b64encode(nonce + sealed).decode()

    def open(self, *, account_id: str, key_id: str | None, stored: str) -> str:
        """The secret of a stored row. key_id None: a row written before secrets were encrypted, read as it is
        (auth seals those at start; this covers a replica of the older version writing meanwhile)."""
        if key_id is None:
            return stored
        aes = self._keys.get(key_id)
        if aes is None:
            raise SecretUnreadable(f"sealed with key {key_id}, which is not configured")
        raw = base64.b64decode(stored)
        try:
            return aes.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated(account_id)).decode()
        except InvalidTag:
            raise SecretUnreadable(f"does not open with key {key_id} for this account") from None


def _associated(account_id: str) -> bytes:
    return b"mfa_factors.secret\0" + account_id.encode()


def _local_key(settings: Settings) -> bytes:
    """The embedded profile's key, made once under the data dir (only the real profile requires the setting)."""
    return bytes.fromhex(local_secret(settings.data_dir / "mfa-encryption-key").decode())  # 32 random bytes, hex
