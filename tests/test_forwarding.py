"""A malicious or compromised peer (THREATS.md row 2): it can only speak as itself,
forwarding what it received to a third node fails, and it cannot make two
recipients read different content."""

from __future__ import annotations

import hashlib
import time

import nacl.bindings as sodium

from gateway.envelope import (
    AAD_PREFIX,
    SIG_PREFIX,
    Recipient,
    key_commitment,
    seal,
    step1_parse_outer,
    step2_parse_header,
    verify_receipt,
)
from schemas import xb1json
from schemas.b64 import b64e
from schemas.examples import example_alert


def recipient(fed, node_id):
    key = fed["KZ"].node.trust().keys.encryption_key(node_id, int(time.time()))
    return Recipient(node_id, key.kid, key.pub)


def post(member, wire):
    answer = member.client().post("/xb1/envelopes", data=wire)
    return answer.status_code, answer.data


def rejection(fed, status_and_body, envelope_wire):
    status, body = status_and_body
    envelope = step2_parse_header(*step1_parse_outer(envelope_wire, fed["KZ"].node.limits))
    # Signed by the node that refused (not necessarily a listed recipient) and naming
    # exactly this envelope.
    receipt = verify_receipt(body, trust=fed["KZ"].node.trust().keys, now=int(time.time()))
    assert receipt.status == "rejected"
    assert (receipt.ref, receipt.ph, receipt.ch) == (envelope.header.id, envelope.ph, envelope.ch)
    return status, receipt.reason


def test_forwarding_an_envelope_as_it_is_fails(make_federation):
    fed = make_federation(serve=False)
    sealed = seal(
        typ="alert/1",
        body=example_alert(),
        sender="KZ",
        signing_key=fed["KZ"].keys.current_signing,
        recipients=[recipient(fed, "KG")],
        tl=1,
    )
    assert post(fed["KG"], sealed.to_wire())[0] == 200
    # KG passes KZ's envelope on to UZ: the signature holds, but UZ is not in `to`.
    wire = sealed.to_wire()
    assert rejection(fed, post(fed["UZ"], wire), wire) == (400, "not-a-recipient")


def test_re_addressing_a_received_envelope_fails_to_decrypt(make_federation):
    fed = make_federation(serve=False)
    kg = fed["KG"]
    sealed = seal(
        typ="alert/1",
        body=example_alert(),
        sender="KZ",
        signing_key=fed["KZ"].keys.current_signing,
        recipients=[recipient(fed, "KG")],
        tl=1,
    )
    # KG knows the content key. It builds a new header from itself to UZ, wraps the
    # same key for UZ and signs; the ciphertext stays bound to KZ's header by its AAD.
    entry = sealed.header.to[0]
    cek = kg.keys.encryption_key(entry.kid).unseal(entry.wk)
    uz = recipient(fed, "UZ")
    now = int(time.time())
    header = {
        "suite": "xb1",
        "typ": "alert/1",
        "id": sealed.header.id,
        "iat": now,
        "exp": now + 3600,
        "from": {"node": "KG", "kid": kg.keys.current_signing.kid},
        "to": [{"node": "UZ", "kid": uz.kid, "wk": b64e(sodium.crypto_box_seal(cek, uz.public))}],
        "nonce": b64e(sealed.header.nonce),
        "kc": b64e(key_commitment(cek, sealed.header.nonce)),
        "tl": 1,
    }
    protected = xb1json.dumps(header)
    signature = kg.keys.current_signing.sign(
        SIG_PREFIX + protected + hashlib.sha256(sealed.ciphertext).digest()
    )
    wire = xb1json.dumps(
        {
            "protected": b64e(protected),
            "ciphertext": b64e(sealed.ciphertext),
            "signature": b64e(signature),
        }
    )
    assert rejection(fed, post(fed["UZ"], wire), wire) == (400, "decrypt-failed")


def test_two_recipients_cannot_be_given_different_content(make_federation):
    fed = make_federation(serve=False)
    kz = fed["KZ"]
    kg, uz = recipient(fed, "KG"), recipient(fed, "UZ")
    now = int(time.time())
    nonce = bytes(24)
    cek_kg, cek_uz = b"\x01" * 32, b"\x02" * 32
    header = {
        "suite": "xb1",
        "typ": "alert/1",
        "id": "01a22493-8f60-736d-a931-ee6b2e6c43a4",
        "iat": now,
        "exp": now + 3600,
        "from": {"node": "KZ", "kid": kz.keys.current_signing.kid},
        "to": [
            {"node": "KG", "kid": kg.kid, "wk": b64e(sodium.crypto_box_seal(cek_kg, kg.public))},
            {"node": "UZ", "kid": uz.kid, "wk": b64e(sodium.crypto_box_seal(cek_uz, uz.public))},
        ],
        "nonce": b64e(nonce),
        "kc": b64e(key_commitment(cek_kg, nonce)),
        "tl": 1,
    }
    protected = xb1json.dumps(header)
    ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        xb1json.dumps(example_alert()), AAD_PREFIX + protected, nonce, cek_kg
    )
    signature = kz.keys.current_signing.sign(
        SIG_PREFIX + protected + hashlib.sha256(ciphertext).digest()
    )
    wire = xb1json.dumps(
        {"protected": b64e(protected), "ciphertext": b64e(ciphertext), "signature": b64e(signature)}
    )
    assert post(fed["KG"], wire)[0] == 200
    assert rejection(fed, post(fed["UZ"], wire), wire) == (400, "key-commitment-mismatch")
