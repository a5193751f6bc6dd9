"""xb1 envelopes and receipts (PROTOCOL §3 and §4): sealing, opening, signing receipts.

This module and ``keys/`` are the only places that touch cryptography. Opening
runs the numbered steps of PROTOCOL §3 top to bottom, each a function named
after its step, and stops at the first failure with a stable rejection code.
Step 6 (replay) needs storage, so :func:`open_envelope` takes it as a callback
and the inbox supplies it.

Hazards stated once:

* Nothing about the sender or the content is trusted before step 4 (signature)
  holds; step 3 only looks up the key the header names.
* Signatures are verified over the bytes received, never a re-serialisation.
* The key commitment ``kc`` is compared in constant time before decryption, so
  a sender cannot give two recipients CEKs that open C to different plaintexts.
* ``seal`` with an ``rng`` argument is deterministic and for test vectors only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import KW_ONLY, InitVar, dataclass, field
from typing import Any, Protocol

import nacl.bindings as sodium
import nacl.exceptions

from keys.keypair import EncryptionKeyPair, SigningKeyPair, verify_signature
from keys.trustlist import TrustError
from schemas import xb1json
from schemas.b64 import b64d, b64e
from schemas.errors import WireFormatError

SUITE = "xb1"
SIG_PREFIX = b"xb1:sig\0"
AAD_PREFIX = b"xb1:aad\0"
KC_PREFIX = b"xb1:kc\0"
RECEIPT_PREFIX = b"xb1:rcpt\0"

CEK_BYTES = 32
NONCE_BYTES = 24
WRAPPED_KEY_BYTES = 80
MAX_RECIPIENTS = 64

NODE_RE = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,16})?\Z")
KID_RE = re.compile(r"[0-9a-f]{32}\Z")
TYP_RE = re.compile(r"[a-z][a-z0-9-]{0,31}/[1-9][0-9]{0,3}\Z")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")

HEADER_MEMBERS = frozenset({"suite", "typ", "id", "iat", "exp", "from", "to", "nonce", "kc", "tl"})
RECEIPT_MEMBERS = frozenset({"suite", "typ", "ref", "from", "to", "ph", "ch", "status", "at"})

REJECTION_CODES = (
    "too-large",
    "malformed",
    "not-canonical",
    "unknown-sender",
    "key-not-valid",
    "bad-signature",
    "not-yet-valid",
    "expired",
    "ttl-too-long",
    "replay",
    "not-a-recipient",
    "unwrap-failed",
    "key-commitment-mismatch",
    "decrypt-failed",
    "schema-invalid",
    "unsupported-type",
    "policy-denied",
)


@dataclass(frozen=True)
class Limits:
    """Safety limits of the opening pipeline (PROTOCOL §3 defaults)."""

    max_bytes: int = 1024 * 1024
    skew: int = 120
    max_ttl: int = 30 * 24 * 3600


class Rejected(Exception):
    """An envelope refused at some step. ``authenticated`` is true once step 4 held,
    which is when the sender is owed a signed rejected receipt."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        envelope: Envelope | None = None,
        authenticated: bool = False,
    ) -> None:
        assert code in REJECTION_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.envelope = envelope
        self.authenticated = authenticated


class SenderKeys(Protocol):
    """The trust list as seen by step 3 (implemented by ``keys.trustlist.TrustedKeys``);
    raises ``TrustError`` with code ``unknown-sender`` or ``key-not-valid``."""

    def signing_key(self, node: str, kid: str, iat: int, now: int) -> bytes: ...


@dataclass(frozen=True)
class Party:
    node: str
    kid: str


@dataclass(frozen=True)
class RecipientEntry:
    node: str
    kid: str
    wk: bytes


@dataclass(frozen=True)
class Header:
    """The checked members of the protected header P."""

    typ: str
    id: str
    iat: int
    exp: int
    sender: Party
    to: tuple[RecipientEntry, ...]
    nonce: bytes
    kc: bytes
    tl: int

    @property
    def recipient_nodes(self) -> tuple[str, ...]:
        return tuple(entry.node for entry in self.to)


@dataclass(frozen=True)
class Envelope:
    """An envelope as received or sealed: the exact bytes P, C and S."""

    protected: bytes
    ciphertext: bytes
    signature: bytes
    header: Header
    canonical: bool = True  # is P byte-identical to its xb1-json re-serialisation?
    ph: bytes = field(init=False)
    ch: bytes = field(init=False)
    _: KW_ONLY
    # SHA-256(C) as ``seal`` just computed it for the signature; never from outside.
    sealed_ch: InitVar[bytes | None] = None

    def __post_init__(self, sealed_ch: bytes | None) -> None:
        object.__setattr__(self, "ph", hashlib.sha256(self.protected).digest())
        if sealed_ch is None:
            sealed_ch = hashlib.sha256(self.ciphertext).digest()
        object.__setattr__(self, "ch", sealed_ch)

    def to_wire(self) -> bytes:
        return xb1json.dumps(
            {
                "protected": b64e(self.protected),
                "ciphertext": b64e(self.ciphertext),
                "signature": b64e(self.signature),
            }
        )


@dataclass(frozen=True)
class Opened:
    envelope: Envelope
    body: dict[str, Any]
    payload: bytes  # M exactly as decrypted (canonical xb1-json of ``body``)

    @property
    def header(self) -> Header:
        return self.envelope.header


@dataclass(frozen=True)
class Recipient:
    """Where to seal a content key: a node and its current encryption key."""

    node: str
    kid: str
    public: bytes


# --------------------------------------------------------------------------- sealing


def new_message_id(rng: Callable[[int], bytes] = os.urandom, now_ms: int | None = None) -> str:
    """An RFC 9562 UUID version 7 (time-ordered), lowercase."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = bytearray(ms.to_bytes(6, "big") + rng(10))
    value[6] = 0x70 | (value[6] & 0x0F)
    value[8] = 0x80 | (value[8] & 0x3F)
    text = value.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def key_commitment(cek: bytes, nonce: bytes) -> bytes:
    """PROTOCOL §3: kc = HMAC-SHA-256(key=CEK, msg="xb1:kc\\0" || nonce)."""
    return hmac.digest(cek, KC_PREFIX + nonce, "sha256")


def _wrap_key(cek: bytes, public: bytes, rng: Callable[[int], bytes] | None) -> bytes:
    if rng is None:
        return sodium.crypto_box_seal(cek, public)  # type: ignore[no-any-return]
    # Deterministic sealed box for test vectors: libsodium's construction
    # (ephemeral X25519 pair, nonce = BLAKE2b-192(epk || pk)) with a seeded ephemeral key.
    epk, esk = sodium.crypto_box_seed_keypair(rng(32))
    nonce = sodium.crypto_generichash_blake2b_salt_personal(epk + public, digest_size=24)
    return epk + sodium.crypto_box_easy(cek, nonce, public, esk)  # type: ignore[no-any-return]


def seal(
    *,
    typ: str,
    body: dict[str, Any] | None = None,
    payload: bytes | None = None,
    sender: str,
    signing_key: SigningKeyPair,
    recipients: Sequence[Recipient],
    tl: int,
    iat: int | None = None,
    ttl: int = 7 * 24 * 3600,
    message_id: str | None = None,
    rng: Callable[[int], bytes] | None = None,
) -> Envelope:
    """Seal ``body`` for ``recipients`` and sign it (PROTOCOL §3 "Sealing").

    Pass either ``body`` (encoded here as xb1-json) or ``payload``: bytes the caller
    already encoded with ``xb1json.dumps`` (the outbox keeps them anyway). Payload
    bytes that are not canonical are refused by every receiver (``not-canonical``).

    ``rng`` makes sealing deterministic; it is unsafe outside test-vector generation.
    """
    random = rng or os.urandom
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise ValueError(f"an envelope needs 1 to {MAX_RECIPIENTS} recipients")
    if len({r.node for r in recipients}) != len(recipients):
        raise ValueError("recipient nodes must be unique")
    if not TYP_RE.match(typ) or not NODE_RE.match(sender) or ttl < 1:
        raise ValueError("typ, sender node id or ttl is not valid for an xb1 header")
    for r in recipients:
        if not NODE_RE.match(r.node) or not KID_RE.match(r.kid):
            raise ValueError("a recipient node id or key id is not valid")
    issued = int(time.time()) if iat is None else iat
    if (body is None) == (payload is None):
        raise ValueError("pass exactly one of body and payload")
    message = xb1json.dumps(body) if payload is None else bytes(payload)
    cek = random(CEK_BYTES)
    nonce = random(NONCE_BYTES)
    parsed = Header(
        typ=typ,
        id=message_id or new_message_id(random, issued * 1000),
        iat=issued,
        exp=issued + ttl,
        sender=Party(sender, signing_key.kid),
        to=tuple(RecipientEntry(r.node, r.kid, _wrap_key(cek, r.public, rng)) for r in recipients),
        nonce=nonce,
        kc=key_commitment(cek, nonce),
        tl=tl,
    )
    if not UUID_RE.match(parsed.id):
        raise ValueError("message id must be a lowercase RFC 9562 UUID")
    # Every string of the header was checked above; the sender's kid is computed, not given.
    if _plain_integers(parsed.iat, parsed.exp, tl) and KID_RE.match(parsed.sender.kid):
        protected = _written_header(parsed)
    else:
        protected = protected_header(parsed)
    ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        message, AAD_PREFIX + protected, nonce, cek
    )
    ch = hashlib.sha256(ciphertext).digest()
    signature = signing_key.sign(SIG_PREFIX + protected + ch)
    return Envelope(protected, ciphertext, signature, parsed, sealed_ch=ch)


def protected_header(header: Header) -> bytes:
    """P: the xb1-json of ``header``'s members (PROTOCOL §3).

    Every string member of a header that ``seal`` builds is ASCII without quotes or
    backslashes (checked by the patterns above, or base64url), so its canonical form
    is written directly, members in xb1-json's sorted order; this is a third of the
    Python work of sealing to one recipient. Anything else (an integer outside
    xb1-json's range, a bool, a string the patterns refuse) goes through
    ``xb1json.dumps``, which refuses it or encodes it canonically;
    ``tests/test_envelope.py`` checks that both always give the same bytes.
    """
    sender = header.sender
    if (
        _plain_integers(header.iat, header.exp, header.tl)
        and TYP_RE.match(header.typ)
        and UUID_RE.match(header.id)
        and NODE_RE.match(sender.node)
        and KID_RE.match(sender.kid)
        and all(NODE_RE.match(e.node) and KID_RE.match(e.kid) for e in header.to)
    ):
        return _written_header(header)
    return xb1json.dumps(
        {
            "suite": SUITE,
            "typ": header.typ,
            "id": header.id,
            "iat": header.iat,
            "exp": header.exp,
            "from": {"node": sender.node, "kid": sender.kid},
            "to": [{"node": e.node, "kid": e.kid, "wk": b64e(e.wk)} for e in header.to],
            "nonce": b64e(header.nonce),
            "kc": b64e(header.kc),
            "tl": header.tl,
        }
    )


def _written_header(header: Header) -> bytes:
    """P written out directly; only for headers whose strings are checked and whose
    integers are plain ints in xb1-json's range (see :func:`protected_header`)."""
    sender = header.sender
    to = ",".join(f'{{"kid":"{e.kid}","node":"{e.node}","wk":"{b64e(e.wk)}"}}' for e in header.to)
    return (
        f'{{"exp":{header.exp},"from":{{"kid":"{sender.kid}","node":"{sender.node}"}},'
        f'"iat":{header.iat},"id":"{header.id}","kc":"{b64e(header.kc)}",'
        f'"nonce":"{b64e(header.nonce)}","suite":"{SUITE}","tl":{header.tl},"to":[{to}],'
        f'"typ":"{header.typ}"}}'
    ).encode("ascii")


def _plain_integers(*values: object) -> bool:
    return all(
        type(value) is int and -xb1json.MAX_SAFE_INTEGER <= value <= xb1json.MAX_SAFE_INTEGER
        for value in values
    )


# --------------------------------------------------------------------------- opening


_OUTER_SHAPE = "envelope must be an object with exactly protected, ciphertext, signature"


def step1_parse_outer(raw: bytes, limits: Limits) -> tuple[bytes, bytes, bytes]:
    """§3 step 1: size limit, outer JSON shape, strict base64url."""
    if len(raw) > limits.max_bytes:
        raise Rejected(
            "too-large", f"envelope is {len(raw)} bytes; the limit is {limits.max_bytes}"
        )
    if b"[" in raw or raw.count(b"{") != 1:
        # The outer object holds three base64url strings: one brace, no bracket. Said
        # before parsing, so a megabyte of nesting from anyone costs a scan, not a parse.
        raise Rejected("malformed", _OUTER_SHAPE)
    try:
        outer = xb1json.loads(raw)
    except WireFormatError as e:
        raise Rejected("malformed", f"envelope is not strict JSON: {e}") from e
    if not isinstance(outer, dict) or set(outer) != {"protected", "ciphertext", "signature"}:
        raise Rejected("malformed", _OUTER_SHAPE)
    try:
        protected = b64d(outer["protected"], what="protected")
        ciphertext = b64d(outer["ciphertext"], what="ciphertext")
        signature = b64d(outer["signature"], what="signature", length=64)
    except WireFormatError as e:
        raise Rejected("malformed", str(e)) from e
    return protected, ciphertext, signature


def _party(value: object, what: str) -> Party:
    if not isinstance(value, dict) or set(value) != {"node", "kid"}:
        raise WireFormatError(f"{what} must be an object with exactly node and kid")
    return Party(_node(value["node"], f"{what}.node"), _kid(value["kid"], f"{what}.kid"))


def _node(value: object, what: str) -> str:
    if not isinstance(value, str) or not NODE_RE.match(value):
        raise WireFormatError(f"{what} must be a node id like KZ or KZ-MVD")
    return value


def _kid(value: object, what: str) -> str:
    if not isinstance(value, str) or not KID_RE.match(value):
        raise WireFormatError(f"{what} must be 32 lowercase hex characters")
    return value


def _integer(value: object, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise WireFormatError(f"{what} must be an integer >= {minimum}")
    return value


def check_header_members(header: object) -> Header:
    """The member table of PROTOCOL §3, checked exactly."""
    if not isinstance(header, dict) or set(header) != HEADER_MEMBERS:
        raise WireFormatError(
            "protected header must have exactly: " + ", ".join(sorted(HEADER_MEMBERS))
        )
    if header["suite"] != SUITE:
        raise WireFormatError(f"suite must be {SUITE!r}")
    typ = header["typ"]
    if not isinstance(typ, str) or not TYP_RE.match(typ):
        raise WireFormatError("typ must look like alert/1")
    message_id = header["id"]
    if not isinstance(message_id, str) or not UUID_RE.match(message_id):
        raise WireFormatError("id must be a lowercase RFC 9562 UUID")
    iat = _integer(header["iat"], "iat")
    exp = _integer(header["exp"], "exp")
    if not iat < exp:
        raise WireFormatError("iat must be before exp")
    sender = _party(header["from"], "from")
    to = header["to"]
    if not isinstance(to, list) or not 1 <= len(to) <= MAX_RECIPIENTS:
        raise WireFormatError(f"to must list 1 to {MAX_RECIPIENTS} recipients")
    entries = []
    for index, entry in enumerate(to):
        if not isinstance(entry, dict) or set(entry) != {"node", "kid", "wk"}:
            raise WireFormatError(f"to[{index}] must have exactly node, kid, wk")
        entries.append(
            RecipientEntry(
                _node(entry["node"], f"to[{index}].node"),
                _kid(entry["kid"], f"to[{index}].kid"),
                b64d(entry["wk"], length=WRAPPED_KEY_BYTES, what=f"to[{index}].wk"),
            )
        )
    if len({e.node for e in entries}) != len(entries):
        raise WireFormatError("recipient node ids must be unique")
    return Header(
        typ=typ,
        id=message_id,
        iat=iat,
        exp=exp,
        sender=sender,
        to=tuple(entries),
        nonce=b64d(header["nonce"], length=NONCE_BYTES, what="nonce"),
        kc=b64d(header["kc"], length=32, what="kc"),
        tl=_integer(header["tl"], "tl", minimum=1),
    )


# The most literal commas a header that step 2 accepts can hold: between its members,
# inside "from", and for each recipient between and inside the entries. None can be
# inside a string: every string member must match a pattern without commas (an escape
# such as \u002c decodes to a comma as well, and fails the same pattern).
_MOST_HEADER_COMMAS = (len(HEADER_MEMBERS) - 1) + 1 + (3 * MAX_RECIPIENTS - 1)


def step2_parse_header(protected: bytes, ciphertext: bytes, signature: bytes) -> Envelope:
    """§3 step 2: parse P strictly and check its members."""
    if protected.count(b",") > _MOST_HEADER_COMMAS:
        # Malformed whatever else it holds, so said before parsing: a protected header
        # of tens of thousands of members or list items, from anyone, costs a scan.
        raise Rejected(
            "malformed",
            "protected header: more members or list items than a header can hold "
            f"(at most {len(HEADER_MEMBERS)} members and {MAX_RECIPIENTS} recipients)",
        )
    # Whether P is canonical is decided here, where it is parsed, but only acted on
    # in step 5, after the signature holds.
    try:
        members, canonical = xb1json.loads_with_canonical(protected)
        header = check_header_members(members)
    except WireFormatError as e:
        raise Rejected("malformed", f"protected header: {e}") from e
    return Envelope(protected, ciphertext, signature, header, canonical)


def step3_find_sender_key(envelope: Envelope, trust: SenderKeys, now: int) -> bytes:
    """§3 step 3: the trust list must hold ``from.kid`` as a usable sig key of ``from.node``."""
    sender = envelope.header.sender
    try:
        return trust.signing_key(sender.node, sender.kid, envelope.header.iat, now)
    except TrustError as e:
        raise Rejected(e.code, str(e), envelope=envelope) from e


def step4_verify_signature(envelope: Envelope, public_key: bytes) -> None:
    """§3 step 4: S over "xb1:sig\\0" || P || SHA-256(C). Nothing below runs before this."""
    if not verify_signature(
        public_key, SIG_PREFIX + envelope.protected + envelope.ch, envelope.signature
    ):
        raise Rejected(
            "bad-signature", "signature does not verify under the sender's key", envelope=envelope
        )


def step5_check_time(envelope: Envelope, now: int, limits: Limits) -> None:
    """§3 step 5: P canonical, iat <= now + skew, now <= exp, exp - iat <= max_ttl."""
    header = envelope.header
    if not envelope.canonical:
        raise Rejected(
            "not-canonical",
            "protected header is not canonical xb1-json",
            envelope=envelope,
            authenticated=True,
        )
    if header.iat > now + limits.skew:
        raise Rejected(
            "not-yet-valid",
            f"iat {header.iat} is more than {limits.skew}s ahead of {now}",
            envelope=envelope,
            authenticated=True,
        )
    if now > header.exp:
        raise Rejected(
            "expired", f"envelope expired at {header.exp}", envelope=envelope, authenticated=True
        )
    if header.exp - header.iat > limits.max_ttl:
        raise Rejected(
            "ttl-too-long",
            f"lifetime {header.exp - header.iat}s exceeds {limits.max_ttl}s",
            envelope=envelope,
            authenticated=True,
        )


def step7_decrypt(envelope: Envelope, node: str, enc_keys: Iterable[EncryptionKeyPair]) -> Any:
    """§3 step 7: our ``to`` entry, unwrap CEK, check kc in constant time, decrypt, parse M."""
    return step7_decrypt_payload(envelope, node, enc_keys)[0]


def step7_decrypt_payload(
    envelope: Envelope, node: str, enc_keys: Iterable[EncryptionKeyPair]
) -> tuple[Any, bytes]:
    """Step 7, also returning the payload bytes M as decrypted: M's value (any JSON
    value; step 8 refuses what is not a message body) and M."""
    header = envelope.header
    ours = {key.kid: key for key in enc_keys}
    entry = next((e for e in header.to if e.node == node and e.kid in ours), None)
    if entry is None:
        raise Rejected(
            "not-a-recipient",
            f"no recipient entry for {node} under one of its keys",
            envelope=envelope,
            authenticated=True,
        )
    try:
        cek = ours[entry.kid].unseal(entry.wk)
    except ValueError as e:
        raise Rejected(
            "unwrap-failed", "content key did not unwrap", envelope=envelope, authenticated=True
        ) from e
    if len(cek) != CEK_BYTES or not hmac.compare_digest(
        key_commitment(cek, header.nonce), header.kc
    ):
        raise Rejected(
            "key-commitment-mismatch",
            "content key does not match the key commitment",
            envelope=envelope,
            authenticated=True,
        )
    try:
        message = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            envelope.ciphertext, AAD_PREFIX + envelope.protected, header.nonce, cek
        )
    except (nacl.exceptions.CryptoError, ValueError) as e:
        # ValueError: a ciphertext shorter than the AEAD tag (PyNaCl refuses it so).
        raise Rejected(
            "decrypt-failed", "ciphertext did not decrypt", envelope=envelope, authenticated=True
        ) from e
    try:
        body = xb1json.loads_canonical(message)
    except WireFormatError as e:
        raise Rejected(e.code, f"payload: {e}", envelope=envelope, authenticated=True) from e
    # M that parses but is not an object (an array, a string) is step 8's to refuse: no
    # schema of the standard takes it (``schema-invalid``, or ``unsupported-type``).
    return body, message


def step8_validate(envelope: Envelope, body: Any) -> dict[str, Any]:
    """§3 step 8 (schema part): validate M against the schema of ``typ``."""
    from schemas.registry import validate_body  # the standard grows independently of this module

    try:
        return validate_body(envelope.header.typ, body)
    except WireFormatError as e:
        raise Rejected(e.code, str(e), envelope=envelope, authenticated=True) from e


def authenticate(
    raw: bytes,
    *,
    trust: SenderKeys,
    now: int | None = None,
    limits: Limits = Limits(),
) -> Envelope:
    """PROTOCOL §3 steps 1 to 5: the envelope, its sender authenticated and its times
    checked; raise :class:`Rejected` at the first failure."""
    current = int(time.time()) if now is None else now
    protected, ciphertext, signature = step1_parse_outer(raw, limits)
    envelope = step2_parse_header(protected, ciphertext, signature)
    public_key = step3_find_sender_key(envelope, trust, current)
    step4_verify_signature(envelope, public_key)
    step5_check_time(envelope, current, limits)
    return envelope


def decrypt_and_validate(
    envelope: Envelope, node: str, enc_keys: Iterable[EncryptionKeyPair]
) -> Opened:
    """PROTOCOL §3 steps 7 and 8 (schema) of an authenticated envelope."""
    body, payload = step7_decrypt_payload(envelope, node, enc_keys)
    return Opened(envelope, step8_validate(envelope, body), payload)


def open_envelope(
    raw: bytes,
    *,
    node: str,
    trust: SenderKeys,
    enc_keys: Iterable[EncryptionKeyPair],
    now: int | None = None,
    limits: Limits = Limits(),
) -> Opened:
    """Run PROTOCOL §3 steps 1 to 5, 7 and 8 (schema); raise :class:`Rejected` at the
    first failure. Step 6 (replay), local policy (the rest of step 8) and storage
    (step 9) need the node's database and belong to the caller; the inbox runs step 6
    with step 9 (gateway/inbox.py)."""
    envelope = authenticate(raw, trust=trust, now=now, limits=limits)
    return decrypt_and_validate(envelope, node, enc_keys)


# --------------------------------------------------------------------------- receipts


@dataclass(frozen=True)
class Receipt:
    """A verified receipt (PROTOCOL §4)."""

    ref: str
    signer: Party
    to: str
    ph: bytes
    ch: bytes
    status: str
    reason: str | None
    at: int
    wire: bytes

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


def make_receipt(
    envelope: Envelope,
    *,
    receiver: str,
    signing_key: SigningKeyPair,
    reason: str | None = None,
    at: int | None = None,
) -> bytes:
    """Sign a receipt for ``envelope``: accepted when ``reason`` is None, else rejected."""
    if reason is not None and reason not in REJECTION_CODES:
        raise ValueError(f"unknown rejection code {reason!r}")
    body: dict[str, Any] = {
        "suite": SUITE,
        "typ": "receipt/1",
        "ref": envelope.header.id,
        "from": {"node": receiver, "kid": signing_key.kid},
        "to": envelope.header.sender.node,
        "ph": b64e(envelope.ph),
        "ch": b64e(envelope.ch),
        "status": "accepted" if reason is None else "rejected",
        "at": int(time.time()) if at is None else at,
    }
    if reason is not None:
        body["reason"] = reason
    signed = xb1json.dumps(body)
    return xb1json.dumps(
        {"protected": b64e(signed), "signature": b64e(signing_key.sign(RECEIPT_PREFIX + signed))}
    )


#: How long before an envelope's ``iat`` a receipt for it may be dated: the largest
#: ``clock_skew`` a receiving node may allow (gateway/config.py). The signer's key is
#: looked up as usable at the receipt's ``at``, which the receiver chooses: without
#: this bound a retired key would still vouch for envelopes sealed long after its
#: window, by dating its receipts back into it.
RECEIPT_BEFORE_IAT = 24 * 3600


class ReceiptInvalid(Exception):
    """A receipt that does not verify or does not match the envelope it should answer."""

    code = "receipt-invalid"


def verify_receipt(
    wire: bytes, *, trust: SenderKeys, now: int, envelope: Envelope | None = None
) -> Receipt:
    """Verify a receipt's signature against the trust list and, if given, that it names
    exactly ``envelope`` (same id, sender, P and C hashes) and is dated no earlier than
    :data:`RECEIPT_BEFORE_IAT` before the envelope was sealed."""
    try:
        outer = xb1json.loads(wire)
        if not isinstance(outer, dict) or set(outer) != {"protected", "signature"}:
            raise WireFormatError("receipt must have exactly protected and signature")
        signed = b64d(outer["protected"], what="receipt protected")
        signature = b64d(outer["signature"], length=64, what="receipt signature")
        body = xb1json.loads(signed)
        if not isinstance(body, dict):
            raise WireFormatError("receipt body must be an object")
        rejected = body.get("status") == "rejected"
        members = RECEIPT_MEMBERS | ({"reason"} if rejected else set())
        if set(body) != members:
            raise WireFormatError("receipt must have exactly: " + ", ".join(sorted(members)))
        if body["suite"] != SUITE or body["typ"] != "receipt/1":
            raise WireFormatError("receipt suite/typ must be xb1 receipt/1")
        if body["status"] not in ("accepted", "rejected"):
            raise WireFormatError("receipt status must be accepted or rejected")
        if rejected and body["reason"] not in REJECTION_CODES:
            raise WireFormatError("receipt reason is not a rejection code")
        signer = _party(body["from"], "receipt from")
        to = _node(body["to"], "receipt to")
        ref = body["ref"]
        if not isinstance(ref, str) or not UUID_RE.match(ref):
            raise WireFormatError("receipt ref must be a lowercase UUID")
        at = _integer(body["at"], "receipt at")
        ph = b64d(body["ph"], length=32, what="receipt ph")
        ch = b64d(body["ch"], length=32, what="receipt ch")
    except WireFormatError as e:
        raise ReceiptInvalid(f"malformed receipt: {e}") from e
    try:
        public_key = trust.signing_key(signer.node, signer.kid, at, now)
    except TrustError as e:
        raise ReceiptInvalid(f"receipt signer not trusted: {e}") from e
    if not verify_signature(public_key, RECEIPT_PREFIX + signed, signature):
        raise ReceiptInvalid("receipt signature does not verify")
    if xb1json.dumps(body) != signed:
        raise ReceiptInvalid("receipt is not canonical xb1-json")
    if envelope is not None:
        header = envelope.header
        if (
            ref != header.id
            or to != header.sender.node
            or signer.node not in header.recipient_nodes
            or not hmac.compare_digest(ph, envelope.ph)
            or not hmac.compare_digest(ch, envelope.ch)
        ):
            raise ReceiptInvalid("receipt does not name this exact envelope")
        if at < header.iat - RECEIPT_BEFORE_IAT:
            raise ReceiptInvalid(
                f"receipt dated {at}, more than {RECEIPT_BEFORE_IAT} s before the envelope "
                f"was sealed ({header.iat})"
            )
    return Receipt(ref, signer, to, ph, ch, body["status"], body.get("reason"), at, bytes(wire))
