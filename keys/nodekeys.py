"""A node's own private key ring (PROTOCOL §1: separate ``sig`` and ``enc`` key pairs).

The ring holds exactly one active signing pair (the one that signs envelopes, receipts
and checkpoints) and at least one active encryption pair; retired pairs stay on the ring
so that messages sealed to an old encryption key during a rotation overlap still open
(§3 step 7 looks keys up by ``kid`` whatever their status). The ring is stored with
``keys.sealed`` (argon2id + XChaCha20-Poly1305); its secret JSON form is::

    {"node": NODE,
     "sig": [{"kid", "seed": B64, "created", "status"}, ...],
     "enc": [{"kid", "secret": B64, "created", "status"}, ...]}
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, TypeVar

from schemas.b64 import b64d, b64e
from schemas.errors import WireFormatError

from .keypair import KEY_BYTES, EncryptionKeyPair, SigningKeyPair
from .sealed import (
    MEMLIMIT_MODERATE,
    OPSLIMIT_MODERATE,
    KeyFileError,
    read_key_file,
    write_key_file,
)
from .trustlist import NodeKey, TrustedKeys, TrustError

NODE_ID = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,16})?")
PASSPHRASE_ENV = "GATEWAY_KEY_PASSPHRASE"  # noqa: S105 - a variable name, not a secret
DETERMINISTIC_DOMAIN = b"xb1:deterministic-node-key\0"

RingStatus = Literal["active", "retired"]
P = TypeVar("P", SigningKeyPair, EncryptionKeyPair)


@dataclass(frozen=True)
class RingKey(Generic[P]):
    """One key pair on the ring with its metadata."""

    pair: P
    created: int
    status: RingStatus = "active"

    def __post_init__(self) -> None:
        if not isinstance(self.pair, (SigningKeyPair, EncryptionKeyPair)):
            raise TypeError("pair must be a SigningKeyPair or an EncryptionKeyPair")
        if isinstance(self.created, bool) or not isinstance(self.created, int):
            raise ValueError("created must be integer Unix seconds")
        if self.status not in ("active", "retired"):
            raise ValueError(f"ring key status must be active or retired, not {self.status!r}")

    @property
    def kid(self) -> str:
        return self.pair.kid


@dataclass(frozen=True)
class NodeKeys:
    """The private keys of one node. Immutable: rotation returns a new ring."""

    node: str
    signing: tuple[RingKey[SigningKeyPair], ...]
    encryption: tuple[RingKey[EncryptionKeyPair], ...]

    def __post_init__(self) -> None:
        """§1 invariants: a valid node id, one active sig pair, an active enc pair."""
        if not isinstance(self.node, str) or not NODE_ID.fullmatch(self.node):
            raise ValueError(f"node id {self.node!r} does not match {NODE_ID.pattern}")
        object.__setattr__(self, "signing", tuple(self.signing))
        object.__setattr__(self, "encryption", tuple(self.encryption))
        if not all(isinstance(k.pair, SigningKeyPair) for k in self.signing):
            raise TypeError("signing ring must hold SigningKeyPair entries")
        if not all(isinstance(k.pair, EncryptionKeyPair) for k in self.encryption):
            raise TypeError("encryption ring must hold EncryptionKeyPair entries")
        if sum(k.status == "active" for k in self.signing) != 1:
            raise ValueError("the ring needs exactly one active signing key")
        if not any(k.status == "active" for k in self.encryption):
            raise ValueError("the ring needs at least one active encryption key")
        kids = [k.kid for k in self.signing] + [k.kid for k in self.encryption]
        if len(set(kids)) != len(kids):
            raise ValueError("a key appears twice on the ring")

    # -- construction -------------------------------------------------------------------

    @classmethod
    def generate(cls, node: str, *, now: int | None = None) -> NodeKeys:
        """A fresh ring: one random signing pair and one random encryption pair."""
        created = int(time.time()) if now is None else now
        return cls(
            node,
            (RingKey(SigningKeyPair.generate(), created),),
            (RingKey(EncryptionKeyPair.generate(), created),),
        )

    @classmethod
    def deterministic(cls, node: str, seed: bytes, *, created: int = 0) -> NodeKeys:
        """A reproducible ring for test vectors and fixtures, NEVER for production:
        each private key is SHA-256(domain || use || 0 || node || 0 || seed)."""
        if not isinstance(seed, bytes):
            raise TypeError("seed must be bytes")

        def derive(use: bytes) -> bytes:
            return hashlib.sha256(
                DETERMINISTIC_DOMAIN + use + b"\0" + node.encode("ascii") + b"\0" + seed
            ).digest()

        return cls(
            node,
            (RingKey(SigningKeyPair(derive(b"sig")), created),),
            (RingKey(EncryptionKeyPair(derive(b"enc")), created),),
        )

    def rotate_signing(self, *, now: int, pair: SigningKeyPair | None = None) -> NodeKeys:
        """Retire the active signing pair and make a new one (``pair`` or random) active."""
        new = RingKey(pair or SigningKeyPair.generate(), now)
        old = tuple(replace(k, status="retired") for k in self.signing)
        return replace(self, signing=(*old, new))

    def rotate_encryption(self, *, now: int, pair: EncryptionKeyPair | None = None) -> NodeKeys:
        """Retire the active encryption pairs (they still open old messages) and add a new
        active one (``pair`` or random)."""
        new = RingKey(pair or EncryptionKeyPair.generate(), now)
        old = tuple(replace(k, status="retired") for k in self.encryption)
        return replace(self, encryption=(*old, new))

    # -- queries ------------------------------------------------------------------------

    @property
    def current_signing(self) -> SigningKeyPair:
        """The one active signing pair."""
        return next(k.pair for k in self.signing if k.status == "active")

    @property
    def current_encryption(self) -> EncryptionKeyPair:
        """The newest active encryption pair (the one to publish in the trust list)."""
        active = [k for k in self.encryption if k.status == "active"]
        return max(active, key=lambda k: k.created).pair

    def signing_key(self, kid: str) -> SigningKeyPair | None:
        """The signing pair with ``kid``, active or retired, or None."""
        return next((k.pair for k in self.signing if k.kid == kid), None)

    def encryption_key(self, kid: str) -> EncryptionKeyPair | None:
        """The encryption pair with ``kid`` (§3 step 7), active or retired, or None."""
        return next((k.pair for k in self.encryption if k.kid == kid), None)

    @property
    def encryption_keys(self) -> tuple[EncryptionKeyPair, ...]:
        """Every encryption pair on the ring, active and retired."""
        return tuple(k.pair for k in self.encryption)

    def listing_problems(self, listed: TrustedKeys, now: int) -> list[str]:
        """What stops this node exchanging under a trust list's keys at ``now``, one
        sentence each with what to do; empty when its entry and this ring agree (or
        when the list does not name the node at all, which callers say in their own
        words).

        Peers seal to the newest active encryption key the list gives for the node
        (§5), which must be on this ring; and at least one signing key of this ring
        must be usable under the list, or peers refuse everything the node signs."""
        entry = listed.keys_of(self.node)
        if not entry:
            return []
        problems = []
        listed_signing = {k.kid: k for k in entry if k.use == "sig"}
        signing = [k.kid for k in self.signing]
        usable = []
        for kid in signing:
            try:
                listed.signing_key(self.node, kid, now, now)
            except TrustError:
                continue
            usable.append(kid)
        if not usable:
            on_list = [listed_signing[kid] for kid in signing if kid in listed_signing]
            if on_list:
                states = "; ".join(_key_state(k) for k in on_list)
                problems.append(
                    f"the trust list has this node's signing key but not as usable now "
                    f"({states}): peers refuse everything this node sends (key-not-valid); "
                    "ask the administrators for a version that lists a usable signing key "
                    "of this node (after 'gateway keys rotate', its new one)"
                )
            else:
                named = ", ".join(k.kid for k in entry if k.use == "sig") or "none"
                problems.append(
                    f"no signing key of the key file ({', '.join(signing)}) is in the trust "
                    f"list, which lists {named} for {self.node}: peers refuse everything "
                    f"this node sends (unknown-sender); {_COMPARE}"
                )
        try:
            sealed_to = listed.encryption_key(self.node, now)
        except TrustError:
            states = "; ".join(_key_state(k) for k in entry if k.use == "enc") or "none listed"
            problems.append(
                f"the trust list gives no usable encryption key for {self.node} ({states}): "
                "peers cannot send to this node; ask the administrators for a version that "
                "lists its current one ('gateway keys entry')"
            )
        else:
            if self.encryption_key(sealed_to.kid) is None:
                problems.append(
                    f"peers encrypt to {sealed_to.kid}, the encryption key the trust list "
                    f"gives for {self.node}, which is not in the key file "
                    f"({', '.join(k.kid for k in self.encryption)}): this node refuses "
                    f"everything sent to it (not-a-recipient); {_COMPARE}"
                )
        return problems

    # -- storage ------------------------------------------------------------------------

    def to_secret_json(self) -> dict[str, Any]:
        """The secret JSON object stored (sealed) by ``keys.sealed``. Handle with care."""
        return {
            "node": self.node,
            "sig": [
                {"kid": k.kid, "seed": b64e(k.pair.seed), "created": k.created, "status": k.status}
                for k in self.signing
            ],
            "enc": [
                {
                    "kid": k.kid,
                    "secret": b64e(k.pair.secret),
                    "created": k.created,
                    "status": k.status,
                }
                for k in self.encryption
            ],
        }

    @classmethod
    def from_secret_json(cls, obj: object) -> NodeKeys:
        """Rebuild a ring from ``to_secret_json`` output; each kid must match its key.
        Raises ``KeyFileError`` (``key-file-malformed``)."""
        try:
            if not isinstance(obj, dict) or set(obj) != {"node", "sig", "enc"}:
                raise ValueError("key ring must have exactly node, sig and enc")
            signing = tuple(
                RingKey(_pair(entry, "seed", SigningKeyPair), entry["created"], entry["status"])
                for entry in _entries(obj["sig"], "seed")
            )
            encryption = tuple(
                RingKey(
                    _pair(entry, "secret", EncryptionKeyPair), entry["created"], entry["status"]
                )
                for entry in _entries(obj["enc"], "secret")
            )
            return cls(obj["node"], signing, encryption)
        except (ValueError, TypeError) as e:  # WireFormatError is a ValueError
            raise KeyFileError("key-file-malformed", f"bad key ring: {e}") from e

    def save(
        self,
        path: str | os.PathLike[str],
        passphrase: str | None,
        *,
        unsafe_unsealed: bool = False,
        opslimit: int = OPSLIMIT_MODERATE,
        memlimit: int = MEMLIMIT_MODERATE,
    ) -> None:
        """Write the ring sealed under ``passphrase`` (mode 0600, atomic); unsealed only
        with ``passphrase=None`` and ``unsafe_unsealed=True`` (demos)."""
        write_key_file(
            path,
            self.to_secret_json(),
            passphrase,
            unsafe_unsealed=unsafe_unsealed,
            opslimit=opslimit,
            memlimit=memlimit,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: str | None) -> NodeKeys:
        """Read a ring written by ``save``; raises ``KeyFileError``."""
        return cls.from_secret_json(read_key_file(path, passphrase))


_COMPARE = (
    "compare 'gateway keys show' with 'gateway trust show' (a key file restored from "
    "another backup, or an entry the administrators built from other keys)"
)


def _key_state(key: NodeKey) -> str:
    """A listed key's status and window, for a person."""
    window = f"valid {key.not_before} to {key.not_after} (Unix seconds)"
    if key.status == "revoked":
        return f"{key.kid} revoked" + (
            f" at {key.revoked_at}, {window}" if key.revoked_at is not None else ""
        )
    return f"{key.kid} {key.status}, {window}"


def _entries(value: object, secret_name: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ValueError("key list must be a list")
    for entry in value:
        if not isinstance(entry, dict) or set(entry) != {"kid", secret_name, "created", "status"}:
            raise ValueError(f"key entry must have exactly kid, {secret_name}, created, status")
    return value


def _pair(entry: dict[str, Any], secret_name: str, kind: type[P]) -> P:
    try:
        secret = b64d(entry[secret_name], length=KEY_BYTES, what=secret_name)
    except WireFormatError as e:
        raise ValueError(str(e)) from e
    pair = kind(secret)
    if pair.kid != entry["kid"]:
        raise ValueError(f"kid {entry['kid']!r} does not match its key")
    return pair


def passphrase_from_env(var: str = PASSPHRASE_ENV) -> str | None:
    """The key-file passphrase from the environment, or None if unset or empty."""
    return os.environ.get(var) or None
