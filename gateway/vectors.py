"""Generate the envelope and receipt test vectors (PROTOCOL §3 and §4).

    python -m gateway.vectors          # rewrite schemas/vectors/xb1-{envelopes,receipts}.json
    python -m gateway.vectors --check  # exit 1 if either file is stale (CI runs this)

Everything comes from fixed seeds and fixed times: keys are
``NodeKeys.deterministic``, sealing uses ``seal(rng=...)`` with a SHA-256
counter-mode stream seeded by the case name, and Ed25519 signatures are
deterministic, so the files are byte-identical on every run and adding a case
changes no other case.

``xb1-envelopes.json`` is a list of cases::

    {"name", "description", "now",
     "recipient": {"node", "enc_sk"},          # the node opening the envelope
     "trust": [{"node", "kid", "pub", "use", "status"?, "not_before"?,
                "not_after"?, "revoked_at"?}],  # the §5 key fields a case needs
     "envelope": {...} | "exact bytes",       # a string when not a well-formed object
     "max_bytes"?,                            # size limit, default 1 MiB
     "expect": "ok" | a §3 rejection code,
     "payload"?}                              # the opened body, when "ok"

``enc_sk`` (raw X25519 private key) and ``pub`` (raw Ed25519 public key) are
base64url without padding; ``now`` is integer Unix seconds. Other limits are
the §3 defaults (skew 120 s, max_ttl 30 days). ``replay`` and
``policy-denied`` need a node's storage and policy, so no vector shows them.

``xb1-receipts.json`` is a list of cases::

    {"name", "description", "now", "trust": [...],
     "receipt": {...} | "exact bytes", "envelope": {...},
     "expect": "ok" | "receipt-invalid", "status"?, "reason"?}

Cases that need an envelope which is correctly signed but wrong in one other
way are built by taking a sealed envelope apart (:class:`Draft`), changing one
thing and encrypting and signing again, with the same primitives as
``gateway.envelope``.

Hazard: every private key here is public. These keys and ``seal(rng=...)``
are for test vectors only, never for a real node.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.bindings as sodium

from gateway.envelope import (
    AAD_PREFIX,
    RECEIPT_PREFIX,
    SIG_PREFIX,
    Envelope,
    Recipient,
    key_commitment,
    make_receipt,
    seal,
)
from keys.keypair import EncryptionKeyPair, SigningKeyPair
from keys.nodekeys import NodeKeys
from schemas import xb1json
from schemas.b64 import b64d, b64e
from schemas.examples import example_alert, example_alert_uzbek_latin

VECTORS_DIR = Path(__file__).resolve().parent.parent / "schemas" / "vectors"
ENVELOPES_FILE = VECTORS_DIR / "xb1-envelopes.json"
RECEIPTS_FILE = VECTORS_DIR / "xb1-receipts.json"

SEED = b"xb1 test vectors v1"
DAY = 86_400
NOW = 1_741_946_400  # 2025-03-14T10:00:00Z
IAT = NOW - 600
TTL = 7 * DAY
SKEW = 120
MAX_TTL = 30 * DAY
TL = 3
MAX_TIME = 2**53 - 1


# --------------------------------------------------------------------------- randomness and keys


class Stream:
    """Deterministic bytes: SHA-256(seed || 8-byte counter) blocks, concatenated.
    A stand-in for ``os.urandom`` in vector generation only."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._counter = 0
        self._buffer = b""

    def __call__(self, size: int) -> bytes:
        while len(self._buffer) < size:
            block = self._seed + self._counter.to_bytes(8, "big")
            self._buffer += hashlib.sha256(block).digest()
            self._counter += 1
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def stream(name: str) -> Stream:
    """The random stream of one case, so that cases do not depend on each other."""
    return Stream(SEED + b"\0" + name.encode("utf-8"))


@dataclass(frozen=True)
class VectorNode:
    """A node of the test federation: its id and one sig and one enc key pair."""

    node: str
    sig: SigningKeyPair
    enc: EncryptionKeyPair

    @classmethod
    def derive(cls, node: str, generation: str = "") -> VectorNode:
        ring = NodeKeys.deterministic(node, SEED + generation.encode("ascii"))
        return cls(node, ring.current_signing, ring.current_encryption)

    @property
    def recipient(self) -> Recipient:
        return Recipient(self.node, self.enc.kid, self.enc.public)


KZ = VectorNode.derive("KZ")  # the sender of every envelope case
UZ = VectorNode.derive("UZ")  # the node that opens every envelope case
TJ = VectorNode.derive("TJ")  # another trusted node and co-recipient
KG = VectorNode.derive("KG")  # a node missing from the trust list
KZ_RETIRED = VectorNode.derive("KZ", "/retired")  # KZ's previous signing key
KZ_REVOKED = VectorNode.derive("KZ", "/revoked")  # a KZ signing key that leaked
UZ_OLD = VectorNode.derive("UZ", "/old")  # an encryption key UZ no longer holds

RETIRED_FROM, RETIRED_UNTIL = NOW - 400 * DAY, NOW - 2 * DAY
REVOKED_AT = NOW - DAY


def trust_entry(
    node: str, pair: SigningKeyPair | EncryptionKeyPair, **fields: Any
) -> dict[str, Any]:
    """A trusted key in the vector form of ``TrustedKeys.from_entries``."""
    use = "sig" if isinstance(pair, SigningKeyPair) else "enc"
    return {"node": node, "kid": pair.kid, "pub": b64e(pair.public), "use": use, **fields}


TRUST = [trust_entry("KZ", KZ.sig), trust_entry("TJ", TJ.sig)]
RETIRED_ENTRY = trust_entry(
    "KZ", KZ_RETIRED.sig, status="retired", not_before=RETIRED_FROM, not_after=RETIRED_UNTIL
)
REVOKED_ENTRY = trust_entry(
    "KZ",
    KZ_REVOKED.sig,
    status="revoked",
    not_before=RETIRED_FROM,
    not_after=REVOKED_AT,
    revoked_at=REVOKED_AT,
)


# --------------------------------------------------------------------------- envelope building


def outer(protected: bytes, ciphertext: bytes, signature: bytes) -> dict[str, str]:
    """The §3 wire object."""
    return {
        "protected": b64e(protected),
        "ciphertext": b64e(ciphertext),
        "signature": b64e(signature),
    }


def signed(protected: bytes, ciphertext: bytes, signer: SigningKeyPair) -> dict[str, str]:
    """The wire object with S = Ed25519("xb1:sig\\0" || P || SHA-256(C))."""
    digest = hashlib.sha256(ciphertext).digest()
    return outer(protected, ciphertext, signer.sign(SIG_PREFIX + protected + digest))


def encrypt(message: bytes, aad: bytes, nonce: bytes, cek: bytes) -> bytes:
    """C = XChaCha20-Poly1305-IETF(CEK, nonce, M, AAD)."""
    return sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(message, aad, nonce, cek)  # type: ignore[no-any-return]


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    """``data`` with the byte at ``index`` XORed with ``mask``."""
    changed = bytearray(data)
    changed[index] ^= mask
    return bytes(changed)


def short_alert() -> dict[str, Any]:
    """A small valid alert/1 body (a recruitment channel, no persons), so that the many
    cases that are not about the body stay short."""
    body = example_alert(
        kind="recruitment-channel",
        title="Telegram channel «Работа в Дубае» recruiting hotel staff",
        summary="Offers hotel jobs in Dubai; recruits report their passports were taken.",
        channels=[{"type": "messenger", "platform": "telegram", "value": "@rabota_dubai_example"}],
    )
    del body["subjects"], body["locations"]
    return body


def sealed(
    name: str,
    *,
    body: dict[str, Any] | None = None,
    typ: str = "alert/1",
    sender: str = "KZ",
    signer: SigningKeyPair = KZ.sig,
    recipients: Sequence[Recipient] = (UZ.recipient,),
    iat: int = IAT,
    ttl: int = TTL,
    message_id: str | None = None,
) -> Envelope:
    """A correctly sealed envelope, deterministic for ``name``."""
    return seal(
        typ=typ,
        body=short_alert() if body is None else body,
        sender=sender,
        signing_key=signer,
        recipients=recipients,
        tl=TL,
        iat=iat,
        ttl=ttl,
        message_id=message_id,
        rng=stream(name),
    )


def wire(envelope: Envelope) -> dict[str, str]:
    """The wire object of a sealed envelope."""
    return outer(envelope.protected, envelope.ciphertext, envelope.signature)


def wire_header(envelope: Envelope) -> dict[str, Any]:
    """The protected header of ``envelope`` as a dict."""
    return xb1json.loads(envelope.protected)  # type: ignore[no-any-return]


DELETE = object()  # marks a header member to remove


@dataclass
class Draft:
    """A sealed envelope taken apart with UZ's key: the header as a dict, the CEK, the
    nonce and M. A case changes one thing and calls :meth:`sign` to encrypt and sign
    again."""

    header: dict[str, Any]
    cek: bytes
    nonce: bytes
    message: bytes

    @classmethod
    def of(cls, envelope: Envelope) -> Draft:
        entry = next(e for e in envelope.header.to if e.node == UZ.node)
        cek = UZ.enc.unseal(entry.wk)
        message = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            envelope.ciphertext, AAD_PREFIX + envelope.protected, envelope.header.nonce, cek
        )
        return cls(xb1json.loads(envelope.protected), cek, envelope.header.nonce, message)

    @classmethod
    def sealed(cls, name: str, **options: Any) -> Draft:
        return cls.of(sealed(name, **options))

    def sign(
        self,
        *,
        protected: bytes | None = None,
        signer: SigningKeyPair = KZ.sig,
        nonce: bytes | None = None,
        aad: bytes | None = None,
    ) -> dict[str, str]:
        """Encrypt M and sign as ``seal`` does. P is the xb1-json of ``header`` unless
        the exact bytes ``protected`` are given; ``nonce`` and ``aad`` override what C
        is encrypted with (whatever the header says)."""
        p = xb1json.dumps(self.header) if protected is None else protected
        c = encrypt(
            self.message, AAD_PREFIX + p if aad is None else aad, nonce or self.nonce, self.cek
        )
        return signed(p, c, signer)


def edited(name: str, edit: Callable[[dict[str, Any]], None], **options: Any) -> dict[str, str]:
    """A sealed envelope whose header ``edit`` changes, then correctly signed again."""
    draft = Draft.sealed(name, **options)
    edit(draft.header)
    return draft.sign()


def with_payload(name: str, message: bytes) -> dict[str, str]:
    """A correctly sealed envelope (kc right, signed) whose M is exactly ``message``."""
    draft = Draft.sealed(name)
    draft.message = message
    return draft.sign()


def unsorted_json(value: Any, **options: Any) -> bytes:
    """JSON that parses to ``value`` but is not xb1-json (no key sorting by default)."""
    return json.dumps(value, ensure_ascii=False, **options).encode("utf-8")


# --------------------------------------------------------------------------- envelope cases


@dataclass(frozen=True)
class EnvelopeCase:
    name: str
    description: str
    envelope: dict[str, Any] | str
    expect: str
    payload: dict[str, Any] | None = None
    trust: tuple[dict[str, Any], ...] = tuple(TRUST)
    now: int = NOW
    max_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        case: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "now": self.now,
            "recipient": {"node": UZ.node, "enc_sk": b64e(UZ.enc.secret)},
            "trust": list(self.trust),
            "envelope": self.envelope,
            "expect": self.expect,
        }
        if self.payload is not None:
            case["payload"] = self.payload
        if self.max_bytes is not None:
            case["max_bytes"] = self.max_bytes
        return case


def ok(
    name: str, description: str, body: dict[str, Any] | None = None, **options: Any
) -> EnvelopeCase:
    """A valid case: seal ``body`` (default: the short alert) and expect it back."""
    payload = short_alert() if body is None else body
    case_options = {k: options.pop(k) for k in ("trust", "now", "max_bytes") if k in options}
    envelope = wire(sealed(name, body=payload, **options))
    return EnvelopeCase(name, description, envelope, "ok", payload=payload, **case_options)


def _valid_cases() -> list[EnvelopeCase]:
    at_limit = wire(sealed("ok-exactly-max-bytes"))
    escapes = short_alert() | {
        "summary": 'Line one\nLine "two" with a backslash \\ and a solidus /, then Қ and دبي.'
    }
    return [
        ok(
            "ok-single-recipient",
            "KZ seals the example trafficked-person alert for UZ only.",
            example_alert(),
        ),
        ok(
            "ok-multi-recipient",
            "KZ seals an alert for TJ and UZ; UZ is the second `to` entry.",
            example_alert_uzbek_latin(),
            recipients=(TJ.recipient, UZ.recipient),
        ),
        ok(
            "ok-retired-key-in-window",
            "Signed with KZ's retired key; iat lies inside its [not_before, not_after].",
            signer=KZ_RETIRED.sig,
            iat=RETIRED_UNTIL - DAY,
            trust=(*TRUST, RETIRED_ENTRY),
        ),
        ok(
            "ok-payload-escapes",
            "M holds a newline, quotes, a backslash, a solidus and non-ASCII text "
            "(xb1-json escapes only the first three, §2).",
            escapes,
        ),
        ok("ok-iat-at-skew-edge", "iat = now + skew (120 s) exactly.", iat=NOW + SKEW),
        ok("ok-now-equals-exp", "now = exp exactly.", iat=NOW - TTL),
        ok("ok-ttl-equals-max", "exp - iat = max_ttl (30 days) exactly.", ttl=MAX_TTL),
        EnvelopeCase(
            "ok-exactly-max-bytes",
            "The envelope is exactly max_bytes long.",
            at_limit,
            "ok",
            payload=short_alert(),
            max_bytes=len(xb1json.dumps(at_limit)),
        ),
    ]


def _size_cases() -> list[EnvelopeCase]:
    reference = wire(sealed("too-large-valid-envelope"))
    size = len(xb1json.dumps(reference))
    return [
        EnvelopeCase(
            "too-large-valid-envelope",
            "A valid envelope one byte over max_bytes.",
            reference,
            "too-large",
            max_bytes=size - 1,
        ),
        EnvelopeCase(
            "too-large-before-parsing",
            "Oversized garbage is too-large, not malformed: size is checked first.",
            "[" * 1025,
            "too-large",
            max_bytes=1024,
        ),
    ]


def _replace_b64_char(text: str, old: str, new: str) -> str:
    index = text.index(old)
    return text[:index] + new + text[index + 1 :]


def _outer_cases() -> list[EnvelopeCase]:
    valid = wire(sealed("malformed-outer"))
    raw = xb1json.dumps(valid).decode("ascii")
    signature = b64d(valid["signature"])
    # 64 bytes are 86 characters whose last one carries 2 bits; setting the unused
    # low bits gives a string that decodes to the same bytes but is not canonical.
    last = valid["signature"][-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    loose_last = alphabet[alphabet.index(last) | 0x0F]
    return [
        EnvelopeCase("malformed-not-json", "Not JSON at all.", "xb1 envelope", "malformed"),
        EnvelopeCase(
            "malformed-outer-array",
            "The three members as a JSON array instead of an object.",
            json.dumps([valid["protected"], valid["ciphertext"], valid["signature"]]),
            "malformed",
        ),
        EnvelopeCase(
            "malformed-outer-missing-member",
            "No `signature` member.",
            {"protected": valid["protected"], "ciphertext": valid["ciphertext"]},
            "malformed",
        ),
        EnvelopeCase(
            "malformed-outer-extra-member",
            "An extra `kid` member next to the three.",
            {**valid, "kid": KZ.sig.kid},
            "malformed",
        ),
        EnvelopeCase(
            "malformed-outer-duplicate-key",
            "`signature` appears twice (same value both times).",
            raw[:-1] + ',"signature":"' + valid["signature"] + '"}',
            "malformed",
        ),
        EnvelopeCase(
            "malformed-outer-member-not-string",
            "`protected` is a number.",
            {**valid, "protected": 1},
            "malformed",
        ),
        EnvelopeCase(
            "malformed-b64-padding",
            "`signature` with base64 `==` padding.",
            {**valid, "signature": valid["signature"] + "=="},
            "malformed",
        ),
        EnvelopeCase(
            "malformed-b64-standard-alphabet",
            "`ciphertext` with one `-` written as the standard alphabet's `+`.",
            {**valid, "ciphertext": _replace_b64_char(valid["ciphertext"], "-", "+")},
            "malformed",
        ),
        EnvelopeCase(
            "malformed-b64-non-canonical",
            "`signature` whose last character has non-zero unused bits "
            "(decodes to the same bytes, but re-encoding differs).",
            {**valid, "signature": valid["signature"][:-1] + loose_last},
            "malformed",
        ),
        EnvelopeCase(
            "malformed-signature-length",
            "A 63-byte signature.",
            {**valid, "signature": b64e(signature[:63])},
            "malformed",
        ),
    ]


def _header_cases() -> list[EnvelopeCase]:
    def case(name: str, description: str, edit: Callable[[dict[str, Any]], None]) -> EnvelopeCase:
        return EnvelopeCase(name, description, edited(name, edit), "malformed")

    def set_member(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
        def edit(header: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            target: Any = header
            for part in parents:
                target = target[int(part)] if isinstance(target, list) else target[part]
            if value is DELETE:
                del target[last]
            else:
                target[last] = value

        return edit

    def duplicate_recipient(header: dict[str, Any]) -> None:
        header["to"].append({**header["to"][0], "kid": UZ_OLD.enc.kid})

    def too_many_recipients(header: dict[str, Any]) -> None:
        fake_wk = b64e(bytes(80))
        header["to"] += [
            {"node": f"UZ-{i}", "kid": UZ_OLD.enc.kid, "wk": fake_wk} for i in range(64)
        ]

    draft = Draft.sealed("malformed-header-bytes")
    canonical = xb1json.dumps(draft.header)
    typ_member = b'"typ":"alert/1"'
    tl_member = b'"tl":%d,' % TL
    assert canonical.count(tl_member) == 1 and canonical.endswith(typ_member + b"}")
    return [
        EnvelopeCase(
            "malformed-header-not-json",
            "P is not JSON; correctly signed.",
            draft.sign(protected=b"alert/1 from KZ"),
            "malformed",
        ),
        EnvelopeCase(
            "malformed-header-duplicate-key",
            "P has `typ` twice; correctly signed.",
            draft.sign(protected=canonical[:-1] + b"," + typ_member + b"}"),
            "malformed",
        ),
        EnvelopeCase(
            "malformed-header-float",
            "P has `tl` as 3.0; correctly signed.",
            draft.sign(protected=canonical.replace(tl_member, b'"tl":%d.0,' % TL)),
            "malformed",
        ),
        case(
            "malformed-header-extra-member",
            "P has an extra member `cty`.",
            set_member("cty", "application/json"),
        ),
        case("malformed-header-missing-member", "P lacks `tl`.", set_member("tl", DELETE)),
        case("malformed-header-bad-suite", "suite is `xb2`.", set_member("suite", "xb2")),
        case("malformed-header-bad-typ", "typ has no major version.", set_member("typ", "alert")),
        case(
            "malformed-header-bad-sender-node",
            "from.node is lowercase `kz`.",
            set_member("from.node", "kz"),
        ),
        case(
            "malformed-header-bad-recipient-node",
            "to[0].node is `UZB` (alpha-3).",
            set_member("to.0.node", "UZB"),
        ),
        case(
            "malformed-header-uppercase-kid",
            "from.kid in uppercase hex.",
            set_member("from.kid", KZ.sig.kid.upper()),
        ),
        case(
            "malformed-header-uppercase-id",
            "id is an uppercase UUID.",
            lambda header: header.update(id=header["id"].upper()),
        ),
        case(
            "malformed-header-iat-equals-exp",
            "iat = exp (iat < exp is required).",
            lambda header: header.update(exp=header["iat"]),
        ),
        case("malformed-header-tl-zero", "tl is 0.", set_member("tl", 0)),
        case(
            "malformed-header-wk-length",
            "to[0].wk decodes to 79 bytes.",
            lambda header: header["to"][0].update(wk=b64e(b64d(header["to"][0]["wk"])[:79])),
        ),
        case(
            "malformed-header-nonce-length",
            "nonce decodes to 12 bytes.",
            set_member("nonce", b64e(bytes(12))),
        ),
        case("malformed-header-no-recipients", "to is empty.", set_member("to", [])),
        case(
            "malformed-header-duplicate-recipient-node",
            "UZ appears twice in `to` (under two kids).",
            duplicate_recipient,
        ),
        case(
            "malformed-header-65-recipients", "to has 65 entries (at most 64).", too_many_recipients
        ),
    ]


def _not_canonical_cases() -> list[EnvelopeCase]:
    draft = Draft.sealed("not-canonical-header")
    header = draft.header
    reordered = unsorted_json(dict(reversed(list(header.items()))), separators=(",", ":"))
    spaced = unsorted_json(header, sort_keys=True)
    escaped = xb1json.dumps(header).replace(b'"alert/1"', b'"alert\\/1"')
    body = short_alert()
    return [
        EnvelopeCase(
            "not-canonical-header-key-order",
            "P members in reverse order; correctly signed and encrypted with that P as AAD.",
            draft.sign(protected=reordered),
            "not-canonical",
        ),
        EnvelopeCase(
            "not-canonical-header-whitespace",
            "P with spaces after `:` and `,`; correctly signed.",
            draft.sign(protected=spaced),
            "not-canonical",
        ),
        EnvelopeCase(
            "not-canonical-header-escaped-solidus",
            "P writes typ as `alert\\/1`; correctly signed.",
            draft.sign(protected=escaped),
            "not-canonical",
        ),
        EnvelopeCase(
            "not-canonical-payload-key-order",
            "M members unsorted; correctly sealed.",
            with_payload(
                "not-canonical-payload-key-order",
                unsorted_json(dict(reversed(list(body.items()))), separators=(",", ":")),
            ),
            "not-canonical",
        ),
        EnvelopeCase(
            "not-canonical-payload-ascii-escapes",
            "M escapes non-ASCII characters as \\uXXXX; correctly sealed.",
            with_payload(
                "not-canonical-payload-ascii-escapes",
                json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii"),
            ),
            "not-canonical",
        ),
    ]


def _payload_cases() -> list[EnvelopeCase]:
    invalid_alert = short_alert()
    del invalid_alert["title"]
    return [
        EnvelopeCase(
            "schema-invalid-payload-not-object",
            "M is a JSON array: it parses (step 7), and no message schema takes it (step 8).",
            with_payload("schema-invalid-payload-not-object", b'["alert"]'),
            "schema-invalid",
        ),
        EnvelopeCase(
            "malformed-payload-duplicate-key",
            "M has a duplicate key; correctly sealed.",
            with_payload("malformed-payload-duplicate-key", b'{"kind":"x","kind":"x"}'),
            "malformed",
        ),
        EnvelopeCase(
            "malformed-payload-not-utf8",
            "M is not UTF-8; correctly sealed.",
            with_payload("malformed-payload-not-utf8", b'{"title":"\xff"}'),
            "malformed",
        ),
        EnvelopeCase(
            "schema-invalid-bad-urgency",
            "An alert/1 body with urgency `soon`.",
            wire(sealed("schema-invalid-bad-urgency", body=short_alert() | {"urgency": "soon"})),
            "schema-invalid",
        ),
        EnvelopeCase(
            "schema-invalid-missing-title",
            "An alert/1 body without `title`.",
            wire(sealed("schema-invalid-missing-title", body=invalid_alert)),
            "schema-invalid",
        ),
        EnvelopeCase(
            "unsupported-type-unknown",
            "typ `unknown-type/1`, correctly sealed.",
            wire(sealed("unsupported-type-unknown", typ="unknown-type/1")),
            "unsupported-type",
        ),
        EnvelopeCase(
            "unsupported-type-next-major-version",
            "typ `alert/2`, correctly sealed.",
            wire(sealed("unsupported-type-next-major-version", typ="alert/2")),
            "unsupported-type",
        ),
    ]


def _sender_cases() -> list[EnvelopeCase]:
    impostor = Draft.sealed("unknown-sender-kid-of-other-node")
    impostor.header["from"]["kid"] = TJ.sig.kid
    enc_kid = Draft.sealed("unknown-sender-enc-key")
    enc_kid.header["from"]["kid"] = KZ.enc.kid
    return [
        EnvelopeCase(
            "unknown-sender-node-not-listed",
            "From KG, which the trust list does not hold.",
            wire(sealed("unknown-sender-node-not-listed", sender="KG", signer=KG.sig)),
            "unknown-sender",
        ),
        EnvelopeCase(
            "unknown-sender-kid-of-other-node",
            "from.node KZ with the kid of TJ's signing key, signed by TJ.",
            impostor.sign(signer=TJ.sig),
            "unknown-sender",
        ),
        EnvelopeCase(
            "unknown-sender-enc-key",
            "from.kid is KZ's encryption key (listed with use `enc`).",
            enc_kid.sign(),
            "unknown-sender",
            trust=(*TRUST, trust_entry("KZ", KZ.enc)),
        ),
        EnvelopeCase(
            "key-not-valid-revoked-backdated",
            "Signed with KZ's revoked key, iat back-dated before revoked_at; now is after it.",
            wire(
                sealed(
                    "key-not-valid-revoked-backdated", signer=KZ_REVOKED.sig, iat=REVOKED_AT - DAY
                )
            ),
            "key-not-valid",
            trust=(*TRUST, REVOKED_ENTRY),
        ),
        EnvelopeCase(
            "key-not-valid-retired-outside-window",
            "Signed with KZ's retired key, iat after its not_after.",
            wire(sealed("key-not-valid-retired-outside-window", signer=KZ_RETIRED.sig)),
            "key-not-valid",
            trust=(*TRUST, RETIRED_ENTRY),
        ),
    ]


def _signature_cases() -> list[EnvelopeCase]:
    envelope = sealed("bad-signature")
    changed = wire_header(envelope)
    changed["tl"] += 1
    no_prefix = KZ.sig.sign(envelope.protected + envelope.ch)
    return [
        EnvelopeCase(
            "bad-signature-flipped-ciphertext",
            "One bit of C flipped after signing.",
            outer(envelope.protected, flip(envelope.ciphertext, 40), envelope.signature),
            "bad-signature",
        ),
        EnvelopeCase(
            "bad-signature-flipped-signature",
            "One bit of S flipped.",
            outer(envelope.protected, envelope.ciphertext, flip(envelope.signature, 5)),
            "bad-signature",
        ),
        EnvelopeCase(
            "bad-signature-header-changed",
            "tl raised by one after signing (P still well-formed and canonical).",
            outer(xb1json.dumps(changed), envelope.ciphertext, envelope.signature),
            "bad-signature",
        ),
        EnvelopeCase(
            "bad-signature-wrong-key",
            "Names KZ's key but is signed by KG's.",
            Draft.of(envelope).sign(signer=KG.sig),
            "bad-signature",
        ),
        EnvelopeCase(
            "bad-signature-no-domain-prefix",
            "S = Ed25519(P || SHA-256(C)), without the `xb1:sig\\0` prefix.",
            outer(envelope.protected, envelope.ciphertext, no_prefix),
            "bad-signature",
        ),
    ]


def _time_cases() -> list[EnvelopeCase]:
    def case(name: str, description: str, expect: str, **options: Any) -> EnvelopeCase:
        return EnvelopeCase(name, description, wire(sealed(name, **options)), expect)

    return [
        case("not-yet-valid", "iat = now + skew + 1.", "not-yet-valid", iat=NOW + SKEW + 1),
        case("expired", "exp = now - 1.", "expired", iat=NOW - TTL - 1),
        case("ttl-too-long", "exp - iat = max_ttl + 1.", "ttl-too-long", ttl=MAX_TTL + 1),
    ]


def _recipient_cases() -> list[EnvelopeCase]:
    old_key = Recipient("UZ", UZ_OLD.enc.kid, UZ_OLD.enc.public)
    # wk of TJ's entry (the same CEK sealed to TJ's key), filed under UZ's kid.
    crossed = Draft.sealed("unwrap-failed", recipients=(UZ.recipient, TJ.recipient))
    crossed.header["to"] = [{**crossed.header["to"][0], "wk": crossed.header["to"][1]["wk"]}]
    garbage = Draft.sealed("unwrap-failed-garbage-wk")
    garbage.header["to"][0]["wk"] = b64e(bytes(80))
    other_kc = Draft.sealed("key-commitment-mismatch")
    nonce = b64d(other_kc.header["nonce"])
    other_kc.header["kc"] = b64e(key_commitment(bytes(32), nonce))
    # A recipient given a different CEK than the one C and kc were made with.
    other_cek = Draft.sealed("key-commitment-mismatch-other-cek")
    elsewhere = wire_header(sealed("key-commitment-other-envelope"))
    other_cek.header["to"][0]["wk"] = elsewhere["to"][0]["wk"]
    nonce_draft = Draft.sealed("decrypt-failed-other-nonce")
    aad_draft = Draft.sealed("decrypt-failed-no-aad-prefix")
    flipped = Draft.sealed("decrypt-failed-flipped-ciphertext-resigned")
    flipped_wire = flipped.sign()
    flipped_c = flip(b64d(flipped_wire["ciphertext"]), 0)
    return [
        EnvelopeCase(
            "not-a-recipient-other-node",
            "Sealed for TJ only.",
            wire(sealed("not-a-recipient-other-node", recipients=(TJ.recipient,))),
            "not-a-recipient",
        ),
        EnvelopeCase(
            "not-a-recipient-unknown-kid",
            "Sealed for UZ under an encryption key UZ does not hold.",
            wire(sealed("not-a-recipient-unknown-kid", recipients=(old_key,))),
            "not-a-recipient",
        ),
        EnvelopeCase(
            "unwrap-failed",
            "UZ's entry has UZ's kid but a wk sealed to TJ's key; correctly signed.",
            crossed.sign(),
            "unwrap-failed",
        ),
        EnvelopeCase(
            "unwrap-failed-garbage-wk",
            "UZ's wk is 80 zero bytes; correctly signed.",
            garbage.sign(),
            "unwrap-failed",
        ),
        EnvelopeCase(
            "key-commitment-mismatch",
            "kc computed over another CEK; correctly signed.",
            other_kc.sign(),
            "key-commitment-mismatch",
        ),
        EnvelopeCase(
            "key-commitment-mismatch-other-cek",
            "UZ's wk holds a different CEK from the one C and kc were made with.",
            other_cek.sign(),
            "key-commitment-mismatch",
        ),
        EnvelopeCase(
            "decrypt-failed-other-nonce",
            "C encrypted under a nonce other than the header's; kc right, correctly signed.",
            nonce_draft.sign(nonce=bytes(24)),
            "decrypt-failed",
        ),
        EnvelopeCase(
            "decrypt-failed-no-aad-prefix",
            "C encrypted with AAD = P, without the `xb1:aad\\0` prefix; correctly signed.",
            aad_draft.sign(aad=xb1json.dumps(aad_draft.header)),
            "decrypt-failed",
        ),
        EnvelopeCase(
            "decrypt-failed-flipped-ciphertext-resigned",
            "One bit of C flipped and then signed again.",
            signed(b64d(flipped_wire["protected"]), flipped_c, KZ.sig),
            "decrypt-failed",
        ),
        EnvelopeCase(
            "decrypt-failed-shorter-than-the-tag",
            "C cut to 15 bytes, shorter than the 16-byte AEAD tag, and signed again.",
            signed(b64d(flipped_wire["protected"]), flipped_c[:15], KZ.sig),
            "decrypt-failed",
        ),
    ]


def envelope_cases() -> list[dict[str, Any]]:
    cases = [
        *_valid_cases(),
        *_size_cases(),
        *_outer_cases(),
        *_header_cases(),
        *_not_canonical_cases(),
        *_sender_cases(),
        *_signature_cases(),
        *_time_cases(),
        *_recipient_cases(),
        *_payload_cases(),
    ]
    names = [case.name for case in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    return [case.to_json() for case in cases]


# --------------------------------------------------------------------------- receipt cases

RECEIPT_AT = NOW + 5
RECEIPT_NOW = NOW + 60
RECEIPT_TRUST = (trust_entry("UZ", UZ.sig), trust_entry("TJ", TJ.sig))


@dataclass(frozen=True)
class ReceiptCase:
    name: str
    description: str
    receipt: dict[str, Any] | str
    envelope: Envelope
    expect: str = "receipt-invalid"
    status: str | None = None
    reason: str | None = None
    trust: tuple[dict[str, Any], ...] = RECEIPT_TRUST

    def to_json(self) -> dict[str, Any]:
        case: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "now": RECEIPT_NOW,
            "trust": list(self.trust),
            "receipt": self.receipt,
            "envelope": wire(self.envelope),
            "expect": self.expect,
        }
        if self.status is not None:
            case["status"] = self.status
        if self.reason is not None:
            case["reason"] = self.reason
        return case


def receipt(
    envelope: Envelope, *, by: VectorNode = UZ, reason: str | None = None
) -> dict[str, str]:
    """A correct receipt by ``by`` as a wire object."""
    made = make_receipt(
        envelope, receiver=by.node, signing_key=by.sig, reason=reason, at=RECEIPT_AT
    )
    return json.loads(made)  # type: ignore[no-any-return]


def signed_receipt(protected: bytes, signer: SigningKeyPair) -> dict[str, str]:
    """A receipt wire object over the exact bytes R."""
    signature = signer.sign(RECEIPT_PREFIX + protected)
    return {"protected": b64e(protected), "signature": b64e(signature)}


def receipt_body(wire_receipt: dict[str, str]) -> dict[str, Any]:
    return xb1json.loads(b64d(wire_receipt["protected"]))  # type: ignore[no-any-return]


def receipt_cases() -> list[dict[str, Any]]:
    envelope = sealed("receipt-envelope")
    shared = sealed("receipt-envelope-shared", recipients=(TJ.recipient, UZ.recipient))
    # Same id, sender and recipient, other content: only ph and ch differ.
    twin = sealed("receipt-envelope-twin", iat=IAT + 1, message_id=envelope.header.id)
    other = sealed("receipt-envelope-other")
    accepted = receipt(envelope)
    body = receipt_body(accepted)

    def resigned(**changes: Any) -> dict[str, str]:
        changed = {**body, **changes}
        return signed_receipt(xb1json.dumps(changed), UZ.sig)

    flipped_sig = flip(b64d(accepted["signature"]), 0)
    later = xb1json.dumps({**body, "at": body["at"] + 1})
    unsorted_r = unsorted_json(dict(reversed(list(body.items()))), separators=(",", ":"))
    cases = [
        ReceiptCase(
            "accepted", "UZ accepts KZ's envelope.", accepted, envelope, "ok", status="accepted"
        ),
        ReceiptCase(
            "rejected-with-reason",
            "UZ rejects it as schema-invalid.",
            receipt(envelope, reason="schema-invalid"),
            envelope,
            "ok",
            status="rejected",
            reason="schema-invalid",
        ),
        ReceiptCase(
            "accepted-by-first-of-two-recipients",
            "TJ accepts an envelope to TJ and UZ.",
            receipt(shared, by=TJ),
            shared,
            "ok",
            status="accepted",
        ),
        ReceiptCase(
            "flipped-signature",
            "One bit of the signature flipped.",
            {**accepted, "signature": b64e(flipped_sig)},
            envelope,
        ),
        ReceiptCase(
            "changed-after-signing",
            "`at` raised by one after signing.",
            {**accepted, "protected": b64e(later)},
            envelope,
        ),
        ReceiptCase(
            "other-envelope-same-id",
            "Receipt for another envelope with the same id (ph and ch differ).",
            receipt(twin),
            envelope,
        ),
        ReceiptCase(
            "other-envelope", "Receipt for a different envelope.", receipt(other), envelope
        ),
        ReceiptCase(
            "unknown-signer",
            "Signed by KG, which the trust list does not hold.",
            receipt(envelope, by=KG),
            envelope,
        ),
        ReceiptCase(
            "signer-not-a-recipient",
            "Signed by TJ, which the envelope was not for.",
            receipt(envelope, by=TJ),
            envelope,
        ),
        ReceiptCase(
            "wrong-to",
            "`to` names TJ instead of the sender KZ; correctly signed.",
            resigned(to="TJ"),
            envelope,
        ),
        ReceiptCase(
            "non-canonical-key-order",
            "R members unsorted; correctly signed.",
            signed_receipt(unsorted_r, UZ.sig),
            envelope,
        ),
        ReceiptCase(
            "non-canonical-whitespace",
            "R with spaces; correctly signed.",
            signed_receipt(unsorted_json(body, sort_keys=True), UZ.sig),
            envelope,
        ),
        ReceiptCase(
            "reason-on-accepted",
            "An accepted receipt with a `reason`.",
            resigned(reason="expired"),
            envelope,
        ),
        ReceiptCase(
            "rejected-without-reason",
            "A rejected receipt without `reason`.",
            resigned(status="rejected"),
            envelope,
        ),
        ReceiptCase(
            "unknown-reason",
            "A rejected receipt whose reason is not a §3 code.",
            resigned(status="rejected", reason="too-boring"),
            envelope,
        ),
        ReceiptCase("not-json", "Not JSON.", "receipt", envelope),
    ]
    names = [case.name for case in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    return [case.to_json() for case in cases]


# --------------------------------------------------------------------------- files


def render(cases: list[dict[str, Any]]) -> str:
    return json.dumps(cases, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def rendered() -> dict[Path, str]:
    """Each vector file and the text it must hold."""
    return {ENVELOPES_FILE: render(envelope_cases()), RECEIPTS_FILE: render(receipt_cases())}


def stale_files() -> list[Path]:
    """The vector files whose content differs from a fresh generation."""
    return [
        path
        for path, text in rendered().items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: Sequence[str] = ()) -> int:
    if "--check" in argv:
        stale = stale_files()
        for path in stale:
            print(f"{path} is stale; run python -m gateway.vectors", file=sys.stderr)
        return 1 if stale else 0
    for path, text in rendered().items():
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
