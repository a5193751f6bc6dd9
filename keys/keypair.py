"""Node key pairs: Ed25519 for signing, X25519 for receiving content keys.

Signing and encryption keys are separate pairs (PROTOCOL §1): an Ed25519 key is
never converted to X25519. Constructors check exact lengths so a truncated or
padded key cannot exist as an object.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing

KEY_BYTES = 32
SIGNATURE_BYTES = 64


def key_id(public_key: bytes) -> str:
    """PROTOCOL §1: lowercase hex of the first 16 bytes of SHA-256(raw public key)."""
    if len(public_key) != KEY_BYTES:
        raise ValueError(f"public key must be {KEY_BYTES} bytes, got {len(public_key)}")
    return hashlib.sha256(public_key).digest()[:16].hex()


@dataclass(frozen=True)
class SigningKeyPair:
    """An Ed25519 key pair (``use: sig``). ``seed`` is the 32-byte private seed."""

    seed: bytes
    public: bytes = field(init=False, repr=False, compare=False)
    kid: str = field(init=False, repr=False, compare=False)
    # libsodium's 64-byte secret key (seed || public), kept so that signing does not
    # build a key object on every call.
    _secret64: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, bytes) or len(self.seed) != KEY_BYTES:
            raise ValueError(f"Ed25519 seed must be {KEY_BYTES} bytes")
        public = bytes(nacl.signing.SigningKey(self.seed).verify_key)
        object.__setattr__(self, "public", public)
        object.__setattr__(self, "kid", key_id(public))
        object.__setattr__(self, "_secret64", self.seed + public)

    @classmethod
    def generate(cls) -> SigningKeyPair:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    def sign(self, message: bytes) -> bytes:
        """Detached Ed25519 signature (64 bytes)."""
        signed: bytes = nacl.bindings.crypto_sign(message, self._secret64)
        return signed[:SIGNATURE_BYTES]

    def __repr__(self) -> str:  # never print private material
        return f"SigningKeyPair(kid={self.kid})"


@dataclass(frozen=True)
class EncryptionKeyPair:
    """An X25519 key pair (``use: enc``) that opens sealed-box key wraps."""

    secret: bytes
    public: bytes = field(init=False, repr=False, compare=False)
    kid: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) != KEY_BYTES:
            raise ValueError(f"X25519 private key must be {KEY_BYTES} bytes")
        public = bytes(nacl.public.PrivateKey(self.secret).public_key)
        object.__setattr__(self, "public", public)
        object.__setattr__(self, "kid", key_id(public))

    @classmethod
    def generate(cls) -> EncryptionKeyPair:
        return cls(bytes(nacl.public.PrivateKey.generate()))

    def unseal(self, wrapped: bytes) -> bytes:
        """Open a ``crypto_box_seal`` wrap; raises ``ValueError`` if it does not open."""
        try:
            opened: bytes = nacl.bindings.crypto_box_seal_open(wrapped, self.public, self.secret)
        except nacl.exceptions.CryptoError as e:
            raise ValueError("sealed box did not open") from e
        return opened

    def __repr__(self) -> str:
        return f"EncryptionKeyPair(kid={self.kid})"


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Ed25519 verification of a detached signature; False on any failure."""
    if len(public_key) != KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        # What VerifyKey(public_key).verify does, without building the key object.
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True
