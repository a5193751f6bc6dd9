"""Envelopes and receipts (PROTOCOL §3, §4): round trips, "change one byte, it is rejected
with the right code", time and size edges, recipient limits, and the deterministic
sealed box of ``seal(rng=...)``.

Keys, trust and the helpers that build correctly signed but otherwise wrong envelopes
come from ``gateway.vectors``, so these tests and the published vectors agree.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import nacl.bindings
import nacl.public
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import MAXIMUM
from gateway.envelope import (
    MAX_RECIPIENTS,
    RECEIPT_BEFORE_IAT,
    REJECTION_CODES,
    SUITE,
    Envelope,
    Header,
    Limits,
    Party,
    ReceiptInvalid,
    Recipient,
    RecipientEntry,
    Rejected,
    check_header_members,
    key_commitment,
    make_receipt,
    open_envelope,
    protected_header,
    seal,
    step1_parse_outer,
    step2_parse_header,
    step3_find_sender_key,
    step4_verify_signature,
    step5_check_time,
    step7_decrypt,
    verify_receipt,
)
from gateway.vectors import KG, KZ, TJ, UZ, Draft, Stream, VectorNode, outer, signed
from keys.keypair import EncryptionKeyPair
from keys.trustlist import TrustedKeys
from schemas import xb1json
from schemas.b64 import b64d, b64e
from schemas.errors import WireFormatError
from schemas.examples import EXAMPLE_ALERTS, example_alert

NOW = 1_741_946_400
IAT = NOW - 60
TRUST = TrustedKeys.from_entries(
    [
        {"node": n.node, "kid": n.sig.kid, "pub": b64e(n.sig.public), "use": "sig"}
        for n in (KZ, UZ, TJ)
    ]
)
LIMITS = Limits()
MANY = [VectorNode.derive(f"UZ-{i}", "/many") for i in range(MAX_RECIPIENTS + 1)]
FAST = settings(max_examples=25, deadline=None)


def seal_alert(
    *,
    body: dict[str, Any] | None = None,
    typ: str = "alert/1",
    recipients: tuple[VectorNode, ...] = (UZ,),
    iat: int = IAT,
    ttl: int = 7 * 86_400,
    seed: bytes = b"envelope tests",
) -> Envelope:
    return seal(
        typ=typ,
        body=example_alert() if body is None else body,
        sender="KZ",
        signing_key=KZ.sig,
        recipients=[r.recipient for r in recipients],
        tl=1,
        iat=iat,
        ttl=ttl,
        rng=Stream(seed),
    )


def open_as(
    raw: bytes, node: VectorNode = UZ, *, now: int = NOW, limits: Limits = LIMITS
) -> dict[str, Any]:
    opened = open_envelope(
        raw, node=node.node, trust=TRUST, enc_keys=[node.enc], now=now, limits=limits
    )
    return opened.body


def rejection(raw: bytes, node: VectorNode = UZ, **options: Any) -> str:
    with pytest.raises(Rejected) as rejected:
        open_as(raw, node, **options)
    return rejected.value.code


def open_steps_1_to_7(raw: bytes, node: VectorNode = UZ) -> dict[str, Any]:
    """§3 steps 1-7 without step 8, so any JSON object body round-trips."""
    envelope = step2_parse_header(*step1_parse_outer(raw, LIMITS))
    step4_verify_signature(envelope, step3_find_sender_key(envelope, TRUST, NOW))
    step5_check_time(envelope, NOW, LIMITS)
    return step7_decrypt(envelope, node.node, [node.enc])


def to_wire(protected: bytes, ciphertext: bytes, signature: bytes) -> bytes:
    return xb1json.dumps(outer(protected, ciphertext, signature))


BASE = seal_alert()
BASE_WIRE = BASE.to_wire()


# --------------------------------------------------------------------------- round trips

json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | st.text(max_size=20)
)
json_keys = st.text(st.characters(max_codepoint=127), max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_keys, inner, max_size=4),
    max_leaves=20,
)
bodies = st.dictionaries(json_keys, json_values, max_size=6)


@FAST
@given(body=bodies, typ=st.sampled_from(["alert/1", "referral/1", "x/9"]))
def test_any_json_object_body_round_trips_through_steps_1_to_7(
    body: dict[str, Any], typ: str
) -> None:
    envelope = seal_alert(body=body, typ=typ)
    assert open_steps_1_to_7(envelope.to_wire()) == body


@pytest.mark.parametrize("name", sorted(EXAMPLE_ALERTS))
def test_example_alerts_round_trip_through_open_envelope(name: str) -> None:
    body = EXAMPLE_ALERTS[name]()
    opened = open_envelope(
        seal_alert(body=body).to_wire(), node="UZ", trust=TRUST, enc_keys=[UZ.enc], now=NOW
    )
    assert opened.body == body
    assert opened.header.typ == "alert/1"
    assert opened.header.sender.node == "KZ"


titles = st.text(st.characters(categories=("L", "N", "P", "Zs")), min_size=1, max_size=200).filter(
    str.strip
)


@FAST
@given(title=titles, summary=titles, retention=st.integers(1, 3650))
def test_realistic_alerts_round_trip(title: str, summary: str, retention: int) -> None:
    body = example_alert(title=title, summary=summary, retention_days=retention)
    assert open_as(seal_alert(body=body).to_wire()) == body


@settings(max_examples=8, deadline=None)
@given(count=st.integers(1, MAX_RECIPIENTS), data=st.data())
def test_each_of_n_recipients_opens_the_same_plaintext(count: int, data: st.DataObject) -> None:
    recipients = tuple(MANY[:count])
    raw = seal_alert(recipients=recipients).to_wire()
    chosen = data.draw(st.lists(st.sampled_from(recipients), min_size=1, max_size=4))
    for node in chosen:
        assert open_as(raw, node) == example_alert()
    assert rejection(raw, MANY[count]) == "not-a-recipient"


def test_64_recipients_all_open() -> None:
    raw = seal_alert(recipients=tuple(MANY[:MAX_RECIPIENTS])).to_wire()
    for node in MANY[:MAX_RECIPIENTS]:
        assert open_as(raw, node) == example_alert()


def test_seal_refuses_65_recipients_none_and_duplicates() -> None:
    with pytest.raises(ValueError, match="1 to 64"):
        seal_alert(recipients=tuple(MANY))
    with pytest.raises(ValueError, match="1 to 64"):
        seal_alert(recipients=())
    with pytest.raises(ValueError, match="unique"):
        seal_alert(recipients=(UZ, TJ, UZ))


def test_duplicated_recipient_node_in_header_is_malformed() -> None:
    draft = Draft.of(seal_alert(recipients=(UZ, TJ), seed=b"duplicate"))
    draft.header["to"][1]["node"] = "UZ"
    assert rejection(xb1json.dumps(draft.sign())) == "malformed"


def test_a_recipient_opens_with_any_key_on_its_ring() -> None:
    old = EncryptionKeyPair(bytes(range(32)))
    raw = seal(
        typ="alert/1",
        body=example_alert(),
        sender="KZ",
        signing_key=KZ.sig,
        recipients=[Recipient("UZ", old.kid, old.public)],
        tl=1,
        iat=IAT,
    ).to_wire()
    opened = open_envelope(raw, node="UZ", trust=TRUST, enc_keys=[UZ.enc, old], now=NOW)
    assert opened.body == example_alert()
    assert rejection(raw) == "not-a-recipient"


# --------------------------------------------------------------------------- one byte changed


def expected_for_protected(protected: bytes) -> str:
    """The code a changed P must get when C and S are unchanged: malformed if it no
    longer parses (step 2), unknown-sender if it names another key (step 3, the trust
    list holds only active keys), else bad-signature (step 4)."""
    try:
        header = check_header_members(xb1json.loads(protected))
    except WireFormatError:
        return "malformed"
    if (header.sender.node, header.sender.kid) != ("KZ", KZ.sig.kid):
        return "unknown-sender"
    return "bad-signature"


def expected_for_wire(raw: bytes) -> str:
    """A model of steps 1-4 for an envelope whose wire text was changed."""
    try:
        document = xb1json.loads(raw)
        if not isinstance(document, dict) or set(document) != {
            "protected",
            "ciphertext",
            "signature",
        }:
            return "malformed"
        protected = b64d(document["protected"])
        b64d(document["ciphertext"])
        b64d(document["signature"], length=64)
    except WireFormatError:
        return "malformed"
    if protected != BASE.protected:
        return expected_for_protected(protected)
    return "bad-signature"


def flipped(data: bytes, index: int, mask: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= mask
    return bytes(changed)


def sample_positions(size: int, stride: int) -> list[int]:
    return sorted({*range(0, size, stride), *range(min(size, 16)), *range(max(0, size - 16), size)})


def test_every_flip_in_protected_gets_its_code() -> None:
    seen = set()
    for index in range(len(BASE.protected)):
        protected = flipped(BASE.protected, index, 0x01)
        code = rejection(to_wire(protected, BASE.ciphertext, BASE.signature))
        assert code == expected_for_protected(protected), (index, protected[index : index + 1])
        seen.add(code)
    # The sweep reaches all three outcomes, so the model is exercised, not vacuous.
    assert seen == {"malformed", "unknown-sender", "bad-signature"}


@FAST
@given(data=st.data(), mask=st.integers(1, 255))
def test_random_flip_in_protected_gets_its_code(data: st.DataObject, mask: int) -> None:
    index = data.draw(st.integers(0, len(BASE.protected) - 1))
    protected = flipped(BASE.protected, index, mask)
    code = rejection(to_wire(protected, BASE.ciphertext, BASE.signature))
    assert code == expected_for_protected(protected)


def test_flips_in_ciphertext_are_bad_signatures() -> None:
    for index in sample_positions(len(BASE.ciphertext), 7):
        ciphertext = flipped(BASE.ciphertext, index, 0x80)
        assert rejection(to_wire(BASE.protected, ciphertext, BASE.signature)) == "bad-signature"


def test_every_bit_flip_in_signature_is_a_bad_signature() -> None:
    for index in range(len(BASE.signature)):
        for bit in range(8):
            signature = flipped(BASE.signature, index, 1 << bit)
            code = rejection(to_wire(BASE.protected, BASE.ciphertext, signature))
            assert code == "bad-signature", (index, bit)


@FAST
@given(data=st.data(), mask=st.integers(1, 255), part=st.sampled_from(["ciphertext", "signature"]))
def test_random_flip_in_ciphertext_or_signature_is_a_bad_signature(
    data: st.DataObject, mask: int, part: str
) -> None:
    parts = {"ciphertext": BASE.ciphertext, "signature": BASE.signature}
    index = data.draw(st.integers(0, len(parts[part]) - 1))
    parts[part] = flipped(parts[part], index, mask)
    assert rejection(to_wire(BASE.protected, **parts)) == "bad-signature"


def test_every_character_flip_in_the_wire_text_gets_its_code() -> None:
    for index in range(len(BASE_WIRE)):
        raw = flipped(BASE_WIRE, index, 0x01)
        code = rejection(raw)
        assert code == expected_for_wire(raw), (index, raw[index : index + 1])
        assert code in {"malformed", "bad-signature", "unknown-sender"}


@FAST
@given(data=st.data(), character=st.characters(codec="utf-8"))
def test_random_character_replaced_in_the_wire_text_gets_its_code(
    data: st.DataObject, character: str
) -> None:
    # Any character UTF-8 can encode (a lone surrogate cannot be sent as text; bytes
    # that are not UTF-8 are tested in test_schemas_xb1json.py).
    text = BASE_WIRE.decode("ascii")
    index = data.draw(st.integers(0, len(text) - 1))
    if text[index] == character:
        return
    raw = (text[:index] + character + text[index + 1 :]).encode("utf-8")
    assert rejection(raw) == expected_for_wire(raw)


def test_resigned_flip_in_ciphertext_fails_to_decrypt() -> None:
    # With C changed and S made over the new C, only the AEAD tag can notice.
    draft = Draft.of(BASE)
    valid = draft.sign()
    ciphertext = flipped(b64d(valid["ciphertext"]), 3, 0x01)
    assert rejection(xb1json.dumps(signed(BASE.protected, ciphertext, KZ.sig))) == (
        "decrypt-failed"
    )


# --------------------------------------------------------------------------- time and size


@pytest.mark.parametrize(
    ("iat", "ttl", "expect"),
    [
        (NOW + 120, 3600, "ok"),
        (NOW + 121, 3600, "not-yet-valid"),
        (NOW - 3600, 3600, "ok"),  # now == exp
        (NOW - 3601, 3600, "expired"),
        (IAT, 30 * 86_400, "ok"),
        (IAT, 30 * 86_400 + 1, "ttl-too-long"),
    ],
)
def test_time_window_edges(iat: int, ttl: int, expect: str) -> None:
    raw = seal_alert(iat=iat, ttl=ttl).to_wire()
    if expect == "ok":
        assert open_as(raw) == example_alert()
    else:
        assert rejection(raw) == expect


def test_time_limits_are_configurable() -> None:
    limits = Limits(skew=0, max_ttl=3600)
    assert open_as(seal_alert(iat=NOW, ttl=3600).to_wire(), limits=limits)
    assert rejection(seal_alert(iat=NOW + 1, ttl=60).to_wire(), limits=limits) == "not-yet-valid"
    assert rejection(seal_alert(iat=NOW, ttl=3601).to_wire(), limits=limits) == "ttl-too-long"


def test_size_limit_edge() -> None:
    size = len(BASE_WIRE)
    assert open_as(BASE_WIRE, limits=Limits(max_bytes=size)) == example_alert()
    assert rejection(BASE_WIRE, limits=Limits(max_bytes=size - 1)) == "too-large"
    assert rejection(BASE_WIRE + b" ", limits=Limits(max_bytes=size)) == "too-large"


def test_rejections_after_the_signature_are_authenticated() -> None:
    with pytest.raises(Rejected) as before:
        open_as(to_wire(BASE.protected, BASE.ciphertext, flipped(BASE.signature, 0, 1)))
    assert not before.value.authenticated
    with pytest.raises(Rejected) as after:
        open_as(seal_alert(iat=NOW - 30 * 86_400).to_wire())
    assert after.value.code == "expired" and after.value.authenticated


# --------------------------------------------------------------------------- deterministic sealing


def test_seal_with_rng_is_deterministic_and_without_it_random() -> None:
    assert seal_alert(seed=b"same").to_wire() == seal_alert(seed=b"same").to_wire()
    assert seal_alert(seed=b"same").to_wire() != seal_alert(seed=b"other").to_wire()
    fresh = [
        seal(
            typ="alert/1",
            body={},
            sender="KZ",
            signing_key=KZ.sig,
            recipients=[UZ.recipient],
            tl=1,
            iat=IAT,
        ).to_wire()
        for _ in range(2)
    ]
    assert fresh[0] != fresh[1]


def test_deterministic_wrap_is_a_libsodium_sealed_box() -> None:
    envelope = seal_alert(recipients=(TJ, UZ), seed=b"sealed box")
    for node, entry in zip((TJ, UZ), envelope.header.to, strict=True):
        box = nacl.public.SealedBox(nacl.public.PrivateKey(node.enc.secret))
        cek = box.decrypt(entry.wk)
        assert cek == nacl.bindings.crypto_box_seal_open(entry.wk, node.enc.public, node.enc.secret)
        assert key_commitment(cek, envelope.header.nonce) == envelope.header.kc
        assert len(entry.wk) == 80


# --------------------------------------------------------------------------- receipts


@FAST
@given(reason=st.sampled_from([None, *REJECTION_CODES]), at=st.integers(NOW, NOW + 3600))
def test_receipt_round_trip(reason: str | None, at: int) -> None:
    raw = make_receipt(BASE, receiver="UZ", signing_key=UZ.sig, reason=reason, at=at)
    receipt = verify_receipt(raw, trust=TRUST, now=NOW, envelope=BASE)
    assert (receipt.status, receipt.reason, receipt.at) == (
        "accepted" if reason is None else "rejected",
        reason,
        at,
    )
    assert (receipt.ref, receipt.to, receipt.signer.node) == (BASE.header.id, "KZ", "UZ")
    assert (receipt.ph, receipt.ch) == (BASE.ph, BASE.ch)
    assert receipt.wire == raw


RECEIPT = make_receipt(BASE, receiver="UZ", signing_key=UZ.sig, at=NOW)


def receipt_parts(raw: bytes) -> tuple[bytes, bytes]:
    document = json.loads(raw)
    return b64d(document["protected"]), b64d(document["signature"])


def receipt_wire(protected: bytes, signature: bytes) -> bytes:
    return xb1json.dumps({"protected": b64e(protected), "signature": b64e(signature)})


def test_every_flipped_receipt_byte_is_invalid() -> None:
    protected, signature = receipt_parts(RECEIPT)
    for index in range(len(protected)):
        with pytest.raises(ReceiptInvalid):
            verify_receipt(
                receipt_wire(flipped(protected, index, 0x01), signature),
                trust=TRUST,
                now=NOW,
                envelope=BASE,
            )
    for index in range(len(signature)):
        with pytest.raises(ReceiptInvalid):
            verify_receipt(
                receipt_wire(protected, flipped(signature, index, 0x01)),
                trust=TRUST,
                now=NOW,
                envelope=BASE,
            )
    for index in range(len(RECEIPT)):
        with pytest.raises(ReceiptInvalid):
            verify_receipt(flipped(RECEIPT, index, 0x01), trust=TRUST, now=NOW, envelope=BASE)


def test_receipt_for_another_envelope_is_invalid() -> None:
    other = seal_alert(seed=b"another envelope")
    raw = make_receipt(other, receiver="UZ", signing_key=UZ.sig, at=NOW)
    assert verify_receipt(raw, trust=TRUST, now=NOW, envelope=other).accepted
    with pytest.raises(ReceiptInvalid, match="exact envelope"):
        verify_receipt(raw, trust=TRUST, now=NOW, envelope=BASE)


def test_receipt_by_a_node_that_was_not_a_recipient_is_invalid() -> None:
    raw = make_receipt(BASE, receiver="TJ", signing_key=TJ.sig, at=NOW)
    with pytest.raises(ReceiptInvalid, match="exact envelope"):
        verify_receipt(raw, trust=TRUST, now=NOW, envelope=BASE)


def test_receipt_by_an_untrusted_signer_is_invalid() -> None:
    raw = make_receipt(BASE, receiver="UZ", signing_key=KG.sig, at=NOW)
    with pytest.raises(ReceiptInvalid, match="not trusted"):
        verify_receipt(raw, trust=TRUST, now=NOW, envelope=BASE)


def test_a_receipt_dated_back_into_a_retired_keys_window_is_invalid() -> None:
    """The signer's key is judged at the receipt's ``at``, which the receiver chooses.
    A retired key (its window long over when the envelope was sealed) must not vouch
    for the envelope by a receipt dated back into that window; a receipt dated within
    the largest clock skew before ``iat`` still counts (a receiver's clock behind)."""
    retired = TrustedKeys.from_entries(
        [
            {
                "node": "UZ",
                "kid": UZ.sig.kid,
                "pub": b64e(UZ.sig.public),
                "status": "retired",
                "not_before": IAT - 3 * 365 * 86_400,
                "not_after": IAT - 365 * 86_400,
            }
        ]
    )
    back_dated = make_receipt(BASE, receiver="UZ", signing_key=UZ.sig, at=IAT - 2 * 365 * 86_400)
    assert verify_receipt(back_dated, trust=retired, now=NOW).accepted  # alone, it verifies
    with pytest.raises(ReceiptInvalid, match="before the envelope was sealed"):
        verify_receipt(back_dated, trust=retired, now=NOW, envelope=BASE)
    for at, valid in (
        (IAT - RECEIPT_BEFORE_IAT, True),
        (IAT - RECEIPT_BEFORE_IAT - 1, False),
    ):
        raw = make_receipt(BASE, receiver="UZ", signing_key=UZ.sig, reason="not-yet-valid", at=at)
        if valid:
            assert verify_receipt(raw, trust=TRUST, now=NOW, envelope=BASE).reason
        else:
            with pytest.raises(ReceiptInvalid, match="before the envelope was sealed"):
                verify_receipt(raw, trust=TRUST, now=NOW, envelope=BASE)
    assert RECEIPT_BEFORE_IAT == MAXIMUM["clock_skew"]


def test_make_receipt_refuses_unknown_reasons() -> None:
    with pytest.raises(ValueError, match="unknown rejection code"):
        make_receipt(BASE, receiver="UZ", signing_key=UZ.sig, reason="bored", at=NOW)


# --------------------------------------------------------------------------- P written directly


def members_as_dumped(header: Header) -> bytes:
    """P the way xb1json.dumps writes it: what protected_header must equal."""
    return xb1json.dumps(
        {
            "suite": SUITE,
            "typ": header.typ,
            "id": header.id,
            "iat": header.iat,
            "exp": header.exp,
            "from": {"node": header.sender.node, "kid": header.sender.kid},
            "to": [{"node": e.node, "kid": e.kid, "wk": b64e(e.wk)} for e in header.to],
            "nonce": b64e(header.nonce),
            "kc": b64e(header.kc),
            "tl": header.tl,
        }
    )


_hex = "0123456789abcdef"
nodes = st.from_regex(r"[A-Z]{2}(-[A-Z0-9]{1,16})?", fullmatch=True)
kids = st.text(_hex, min_size=32, max_size=32)
# Integers around xb1-json's limits, and values that are not plain ints at all.
header_integers = st.one_of(
    st.integers(0, 2**40),
    st.integers(-(2**60), 2**60),
    st.sampled_from([2**53 - 1, 2**53, -(2**53) + 1, -(2**53), True, False]),
)
strings = st.one_of(st.text(max_size=12), st.sampled_from(['a"b', "a\\b", "é", "\u2028"]))


@st.composite
def headers(draw: st.DrawFn) -> Header:
    def odd() -> bool:  # now and then a member the patterns refuse, one at a time
        return draw(st.integers(0, 7)) == 0

    typ_pattern = r"[a-z][a-z0-9-]{0,31}/[1-9][0-9]{0,3}"
    return Header(
        typ=draw(strings) if odd() else draw(st.from_regex(typ_pattern, fullmatch=True)),
        id=draw(strings) if odd() else str(draw(st.uuids(version=4))),
        iat=draw(header_integers),
        exp=draw(header_integers),
        sender=Party(
            draw(strings) if odd() else draw(nodes), draw(strings) if odd() else draw(kids)
        ),
        to=tuple(
            RecipientEntry(
                draw(strings) if odd() else draw(nodes),
                draw(strings) if odd() else draw(kids),
                draw(st.binary(min_size=80, max_size=80)),
            )
            for _ in range(draw(st.integers(1, 4)))
        ),
        nonce=draw(st.binary(min_size=24, max_size=24)),
        kc=draw(st.binary(min_size=32, max_size=32)),
        tl=draw(header_integers),
    )


@settings(max_examples=800, deadline=None)
@given(header=headers())
def test_protected_header_is_exactly_what_xb1json_writes(header: Header) -> None:
    try:
        expected = members_as_dumped(header)
    except WireFormatError:
        with pytest.raises(WireFormatError):
            protected_header(header)
        return
    assert protected_header(header) == expected


def test_sealed_header_is_exactly_what_xb1json_writes() -> None:
    envelope = seal_alert(recipients=(UZ, TJ))
    assert envelope.protected == members_as_dumped(envelope.header)
    assert envelope.ch == hashlib.sha256(envelope.ciphertext).digest()
    assert envelope.ph == hashlib.sha256(envelope.protected).digest()


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"protected":"", "ciphertext":"", "signature":"", "x":'
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}",
        b'{"protected":{"a":{"b":{}}}}',
    ],
    ids=["nested-arrays", "a-nested-extra-member", "nested-objects"],
)
def test_an_outer_object_nesting_anything_is_refused_before_it_is_parsed(raw, monkeypatch):
    """The outer object holds three strings: input with a bracket or a second brace is
    malformed on sight, so a megabyte of nesting from anyone costs a scan, not a parse."""
    from schemas import xb1json

    def no_parse(raw):  # type: ignore[no-untyped-def]
        raise AssertionError("parsed")

    monkeypatch.setattr(xb1json, "loads", no_parse)
    assert rejection(raw) == "malformed"


def _bloated_headers() -> dict[str, bytes]:
    """Protected headers with more separators than any header step 2 accepts, each
    signed by KZ so that only their shape is wrong."""
    draft = Draft.of(seal_alert(seed=b"bloated"))
    extra_members = {**draft.header, **{f"x{i:03}": i for i in range(250)}}
    long_list = {**draft.header, "to": draft.header["to"] + [1] * 250}
    return {
        "extra-members": xb1json.dumps(extra_members),
        "long-to-list": xb1json.dumps(long_list),
        "commas-in-a-string": xb1json.dumps({**draft.header, "typ": "," * 250}),
    }


BLOATED = _bloated_headers()


@pytest.mark.parametrize("protected", BLOATED.values(), ids=BLOATED.keys())
def test_a_header_with_more_separators_than_any_header_is_refused_before_it_is_parsed(
    protected: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tens of thousands of members or list items cost a scan, not a parse: the answer
    is malformed whatever else the header holds."""
    raw = xb1json.dumps(Draft.of(seal_alert(seed=b"bloated")).sign(protected=protected))

    def no_parse(raw):  # type: ignore[no-untyped-def]
        raise AssertionError("parsed")

    monkeypatch.setattr(xb1json, "loads_with_canonical", no_parse)
    assert rejection(raw) == "malformed"


@pytest.mark.parametrize("protected", BLOATED.values(), ids=BLOATED.keys())
def test_the_separator_bound_answers_what_parsing_would(
    protected: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the bound, step 2 parses the same headers and refuses them with the same
    code: the shortcut changes the cost of the answer, not the answer."""
    import gateway.envelope

    raw = xb1json.dumps(Draft.of(seal_alert(seed=b"bloated")).sign(protected=protected))
    monkeypatch.setattr(gateway.envelope, "_MOST_HEADER_COMMAS", 10**9)
    assert rejection(raw) == "malformed"


def test_the_separator_bound_is_exactly_that_of_the_largest_header() -> None:
    """A header to 64 recipients has as many commas as the bound allows, and opens."""
    import gateway.envelope

    envelope = seal_alert(recipients=tuple(MANY[:MAX_RECIPIENTS]))
    assert envelope.protected.count(b",") == gateway.envelope._MOST_HEADER_COMMAS
    assert open_as(envelope.to_wire(), MANY[0]) == example_alert()
