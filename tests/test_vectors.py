"""The published envelope and receipt vectors (PROTOCOL §3, §4): every case opens or is
rejected with exactly its code, the cases cover every code a vector can show, and the
files are what ``python -m gateway.vectors`` generates."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from gateway import vectors
from gateway.envelope import (
    REJECTION_CODES,
    Limits,
    ReceiptInvalid,
    Rejected,
    open_envelope,
    step1_parse_outer,
    step2_parse_header,
    verify_receipt,
)
from keys.keypair import EncryptionKeyPair
from keys.trustlist import TrustedKeys
from schemas import xb1json
from schemas.b64 import b64d

VECTORS_DIR = Path(__file__).resolve().parent.parent / "schemas" / "vectors"
ENVELOPE_CASES: list[dict[str, Any]] = json.loads(
    (VECTORS_DIR / "xb1-envelopes.json").read_text(encoding="utf-8")
)
RECEIPT_CASES: list[dict[str, Any]] = json.loads(
    (VECTORS_DIR / "xb1-receipts.json").read_text(encoding="utf-8")
)
#: Codes that need a node's storage (replay) or local policy, so no vector shows them.
NEEDS_A_NODE = {"replay", "policy-denied"}


def wire_bytes(document: dict[str, Any] | str) -> bytes:
    """An object is sent as its xb1-json; a string is the exact bytes."""
    return xb1json.dumps(document) if isinstance(document, dict) else document.encode("utf-8")


def by_name(cases: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(case, id=case["name"]) for case in cases]


@pytest.mark.parametrize("case", by_name(ENVELOPE_CASES))
def test_envelope_vector(case: dict[str, Any]) -> None:
    trust = TrustedKeys.from_entries(case["trust"])
    enc_key = EncryptionKeyPair(b64d(case["recipient"]["enc_sk"], length=32))
    limits = Limits(max_bytes=case.get("max_bytes", Limits().max_bytes))

    def open_case() -> Any:
        return open_envelope(
            wire_bytes(case["envelope"]),
            node=case["recipient"]["node"],
            trust=trust,
            enc_keys=[enc_key],
            now=case["now"],
            limits=limits,
        )

    if case["expect"] == "ok":
        assert open_case().body == case["payload"]
    else:
        with pytest.raises(Rejected) as rejected:
            open_case()
        assert rejected.value.code == case["expect"], rejected.value.message


def test_envelope_vectors_cover_every_code_without_a_node() -> None:
    covered = {case["expect"] for case in ENVELOPE_CASES} - {"ok"}
    assert covered == set(REJECTION_CODES) - NEEDS_A_NODE


def test_envelope_vectors_are_well_formed() -> None:
    names = [case["name"] for case in ENVELOPE_CASES]
    assert len(set(names)) == len(names)
    for case in ENVELOPE_CASES:
        assert isinstance(case["now"], int)
        assert isinstance(case["envelope"], (dict, str))
        assert ("payload" in case) == (case["expect"] == "ok"), case["name"]


def envelope_of(document: dict[str, Any]) -> Any:
    return step2_parse_header(*step1_parse_outer(xb1json.dumps(document), Limits()))


@pytest.mark.parametrize("case", by_name(RECEIPT_CASES))
def test_receipt_vector(case: dict[str, Any]) -> None:
    trust = TrustedKeys.from_entries(case["trust"])
    envelope = envelope_of(case["envelope"])
    raw = wire_bytes(case["receipt"])
    if case["expect"] == "ok":
        receipt = verify_receipt(raw, trust=trust, now=case["now"], envelope=envelope)
        assert receipt.status == case["status"]
        assert receipt.reason == case.get("reason")
        assert receipt.ref == envelope.header.id
    else:
        assert case["expect"] == ReceiptInvalid.code
        with pytest.raises(ReceiptInvalid):
            verify_receipt(raw, trust=trust, now=case["now"], envelope=envelope)


def test_receipt_vectors_show_both_outcomes() -> None:
    statuses = {case.get("status") for case in RECEIPT_CASES if case["expect"] == "ok"}
    assert statuses == {"accepted", "rejected"}
    assert any(case["expect"] == "receipt-invalid" for case in RECEIPT_CASES)


def test_vector_files_are_up_to_date() -> None:
    assert vectors.stale_files() == [], "run: python -m gateway.vectors"
    assert vectors.main(["--check"]) == 0


def test_generation_is_deterministic() -> None:
    assert vectors.rendered() == vectors.rendered()


def test_vector_stream_is_sha256_counter_mode() -> None:
    stream = vectors.Stream(b"seed")
    first = stream(20) + stream(20)
    again = vectors.Stream(b"seed")(40)
    assert first == again
    expected = hashlib.sha256(b"seed" + bytes(8)).digest()
    expected += hashlib.sha256(b"seed" + (1).to_bytes(8, "big")).digest()
    assert again == expected[:40]
