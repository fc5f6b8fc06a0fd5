"""The checkpoint signing key (Ed25519) and the public keys a verifier trusts.

A key id is the first 16 hex digits of the SHA-256 of the raw public key, so a
checkpoint names the key that signed it and a verifier can hold several (rotation)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)


class AuditKeyError(RuntimeError):
    """A key file that cannot be read or is not an Ed25519 key."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def sign(self, message: bytes) -> str:
        return self.private.sign(message).hex()


@dataclass(frozen=True)
class TrustedKeys:
    keys: dict[str, Ed25519PublicKey]

    def verify(self, kid: str, message: bytes, signature_hex: str) -> bool | None:
        """True/False for a known key; None when no trusted key has this id."""
        public = self.keys.get(kid)
        if public is None:
            return None
        try:
            public.verify(bytes.fromhex(signature_hex), message)
        except (InvalidSignature, ValueError):
            return False
        return True


def generate(path: Path) -> SigningKey:
    """A new key, written owner-readable only (created with 0600, never widened)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return SigningKey(private)


def load_signing_key(path: Path) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as err:
        raise AuditKeyError(f"{path}: not a readable PEM private key: {err}") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(f"{path}: not an Ed25519 key")
    return SigningKey(key)


def load_or_create(path: Path) -> SigningKey:
    """The configured key; generated into `path` when there is none yet."""
    if not path.exists():
        try:
            return generate(path)
        except FileExistsError:  # another process generated it meanwhile
            pass
    return load_signing_key(path)


def load_public_key(path: Path) -> Ed25519PublicKey:
    data = path.read_bytes()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        key = load_signing_key(path).public  # a private key file holds its public key too
    if not isinstance(key, Ed25519PublicKey):
        raise AuditKeyError(f"{path}: not an Ed25519 public key")
    return key


def trusted_keys(signing_key_path: Path, extra: list[Path]) -> TrustedKeys:
    """The current key (if its file exists: verifying never creates one) and the
    earlier public keys."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in ([signing_key_path] if signing_key_path.exists() else []) + extra:
        public = load_public_key(path)
        keys[key_id(public)] = public
    return TrustedKeys(keys)


def public_pem(key: SigningKey) -> str:
    return key.public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
