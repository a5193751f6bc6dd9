"""An evidence bundle for one message verifies offline, with no database, and fails
when any byte of it changes."""

from __future__ import annotations

import json
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.audit import evidence, log, merkle, note
from gateway.audit.witness import Witness
from gateway.cli import main
from gateway.dispatcher import Dispatcher
from gateway.envelope import Recipient, seal
from keys.keypair import EncryptionKeyPair, SigningKeyPair
from keys.trustlist import admin_entry, assemble, build_list, key_entry, node_entry, sign_list
from schemas import xb1json
from schemas.b64 import b64e
from schemas.examples import example_alert
from tests.conftest import PASSPHRASE
from tests.test_node_trust import rogue_version_1, successor
from tests.test_rotation import revoke_signing_key
from tests.test_trust_follow import submit


@pytest.fixture
def exchanged(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    message_id = submit(kz, ["KG"])
    Dispatcher(kz.node).run_once()
    log.checkpoint(kz.node)
    log.checkpoint(kg.node)
    return fed, message_id


def test_bundles_from_sender_and_receiver_verify_offline(exchanged, tmp_path):
    fed, message_id = exchanged
    for member in (fed["KZ"], fed["KG"]):
        bundle = evidence.export(member.node, message_id)
        summary = evidence.check(json.loads(json.dumps(bundle)))
        assert summary["message"] == message_id
        assert "receipt from KG accepted" in summary["shown"], summary["shown"]
    sent = evidence.check(evidence.export(fed["KZ"].node, message_id))["shown"]
    assert sent[0] == "message-submitted" and "delivery" in sent
    received = evidence.check(evidence.export(fed["KG"].node, message_id))["shown"]
    assert received[0] == "envelope-accepted"


def test_the_log_is_read_in_batches_and_the_bundle_is_the_same(exchanged, monkeypatch):
    """The export reads the log in batches (a server-side cursor on PostgreSQL):
    with batches of two entries it finds the same entries as in one batch."""
    fed, message_id = exchanged
    kz = fed["KZ"].node
    with kz.sessions() as session:
        assert log.size(session) >= 6  # three batches of two or more
    whole = evidence.export(kz, message_id)
    assert len(whole["entries"]) >= 2
    monkeypatch.setattr(log, "STREAM_ROWS", 2)
    assert evidence.export(kz, message_id) == whole


def test_any_changed_byte_fails(exchanged):
    fed, message_id = exchanged
    bundle = evidence.export(fed["KZ"].node, message_id)
    text = json.dumps(bundle)
    checked = 0
    # Flip characters inside every base64url or note value (a sample of positions).
    for key in ("checkpoint", "trust_list"):
        value = bundle[key]
        for position in range(0, len(value), max(1, len(value) // 12)):
            if not value[position].isalnum():
                continue
            flipped = (
                value[:position] + ("A" if value[position] != "A" else "B") + value[position + 1 :]
            )
            with pytest.raises(evidence.EvidenceError):
                evidence.check({**bundle, key: flipped})
            checked += 1
    for listed in ("entries", "envelopes", "receipts"):
        for index in range(len(bundle[listed])):
            item = bundle[listed][index]
            value = item["entry"] if listed == "entries" else item
            flipped = ("B" if value[5] != "B" else "C").join([value[:5], value[6:]])
            changed = {**item, "entry": flipped} if listed == "entries" else flipped
            copy = json.loads(text)
            copy[listed][index] = changed
            with pytest.raises(evidence.EvidenceError):
                evidence.check(copy)
            checked += 1
    assert checked > 10


def test_export_and_check_commands(exchanged, tmp_path):
    fed, message_id = exchanged
    out = tmp_path / "evidence.json"
    runner = CliRunner()
    made = runner.invoke(
        main,
        ["--instance", str(fed["KZ"].instance), "audit", "export", message_id, "--out", str(out)],
        env={"GATEWAY_KEY_PASSPHRASE": PASSPHRASE},
    )
    assert made.exit_code == 0, made.output
    checked = runner.invoke(main, ["audit", "check", str(out)])
    assert checked.exit_code == 0 and "Evidence verifies" in checked.output
    data = json.loads(out.read_text())
    data["entries"] = data["entries"][1:] + data["entries"][:1]
    data["entries"][0]["seq"] += 1
    out.write_text(json.dumps(data))
    broken = runner.invoke(main, ["audit", "check", str(out)])
    assert broken.exit_code == 1 and "EVIDENCE DOES NOT VERIFY" in broken.output
    unknown = runner.invoke(
        main,
        [
            "--instance",
            str(fed["KZ"].instance),
            "audit",
            "export",
            "00000000-0000-7000-8000-000000000000",
            "--out",
            str(tmp_path / "x.json"),
        ],
        env={"GATEWAY_KEY_PASSPHRASE": PASSPHRASE},
    )
    assert unknown.exit_code == 2 and "error [evidence-invalid]" in unknown.output

    def export(message, to):
        return runner.invoke(
            main,
            ["--instance", str(fed["KZ"].instance), "audit", "export", message, "--out", str(to)],
            env={"GATEWAY_KEY_PASSPHRASE": PASSPHRASE},
        )

    # Any string is no message id: a substring of the log would match unrelated entries.
    bad = export("a", tmp_path / "a.json")
    assert bad.exit_code == 2 and "error [bad-message-id]" in bad.output
    assert not (tmp_path / "a.json").exists()
    # An existing file is never overwritten (it might be the node's keys).
    keys_before = fed["KZ"].node.settings.key_file
    kept = Path(keys_before).read_bytes()
    refused = export(message_id, keys_before)
    assert refused.exit_code == 2 and "error [file-exists]" in refused.output
    assert Path(keys_before).read_bytes() == kept
    fresh = tmp_path / "fresh.json"
    assert export(message_id, fresh).exit_code == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    nested = runner.invoke(main, ["audit", "check", str(deep)])
    assert nested.exit_code == 1 and "EVIDENCE DOES NOT VERIFY" in nested.output


def test_a_bundle_that_shows_nothing_or_has_wrong_types_fails(exchanged):
    fed, message_id = exchanged
    bundle = evidence.export(fed["KZ"].node, message_id)
    for changed in (
        {"entries": [], "envelopes": [], "receipts": []},
        {"entries": [], "envelopes": [], "receipts": [], "message": str(uuid.uuid4())},
        {"entries": {}},
        {"envelopes": None},
        {"receipts": "x"},
        {"trust_list": None},
        {"trust_list": 5},
        {"entries": [5]},
        {"entries": [{"seq": 1, "entry": 5, "proof": []}]},
    ):
        with pytest.raises(evidence.EvidenceError):
            evidence.check({**bundle, **changed})


def test_a_bundle_relabelled_for_another_message_fails(exchanged):
    fed, message_id = exchanged
    for member in (fed["KZ"], fed["KG"]):
        bundle = evidence.export(member.node, message_id)
        for other in (str(uuid.uuid4()), "not an id", 7):
            with pytest.raises(evidence.EvidenceError):
                evidence.check({**bundle, "message": other})


def test_every_receipt_must_verify_not_just_one(make_federation):
    fed = make_federation(("KZ", "KG", "UZ"))
    kz = fed["KZ"]
    message_id = submit(kz, ["KG", "UZ"])
    Dispatcher(kz.node).run_once()
    log.checkpoint(kz.node)
    bundle = evidence.export(kz.node, message_id)
    shown = evidence.check(bundle)["shown"]
    assert sorted(s for s in shown if s.startswith("receipt")) == [
        "receipt from KG accepted",
        "receipt from UZ accepted",
    ]
    first, second = bundle["receipts"]
    flipped = second[:40] + ("A" if second[40] != "A" else "B") + second[41:]
    for receipts in ([first, flipped], [first, b64e(b"not a receipt")], [first, first, flipped]):
        with pytest.raises(evidence.EvidenceError):
            evidence.check({**bundle, "receipts": receipts})


# A federation of two built offline: KZ's old signing key was revoked (stolen) five
# days before NOW, KG's likewise; the new keys are active.
NOW = 1_800_000_000
REVOKED_AT = NOW - 5 * 86400
FEDERATION = "evidence-test"
ADMINS = [SigningKeyPair(bytes([i]) * 32) for i in (1, 2)]
KZ_OLD, KZ_NEW, KG_OLD, KG_NEW = (SigningKeyPair(bytes([i]) * 32) for i in (3, 4, 5, 6))
KZ_ENC, KG_ENC = EncryptionKeyPair(b"\x07" * 32), EncryptionKeyPair(b"\x08" * 32)


def _revoked_federation(kg_old: dict[str, Any] | None = None) -> bytes:
    """The federation's list; ``kg_old`` replaces the status and times of KG's old key."""

    def member(node_id, old, new, enc):
        times = {"status": "revoked", "revoked_at": REVOKED_AT}
        if node_id == "KG" and kg_old is not None:
            times = kg_old
        keys = [
            key_entry(old.public, "sig", **times),
            key_entry(new.public, "sig"),
            key_entry(enc.public, "enc"),
        ]
        entry = node_entry(node_id, node_id, f"https://{node_id.lower()}.example", new, enc)
        return {**entry, "keys": keys}

    raw = build_list(
        federation=FEDERATION,
        version=1,
        issued_at=NOW - 10 * 86400,
        expires=NOW + 30 * 86400,
        prev=None,
        threshold=2,
        admins=[admin_entry(a, f"admin {i}") for i, a in enumerate(ADMINS)],
        nodes=[member("KZ", KZ_OLD, KZ_NEW, KZ_ENC), member("KG", KG_OLD, KG_NEW, KG_ENC)],
    )
    return assemble(raw, [sign_list(raw, a) for a in ADMINS])


def _bundle(kz_key, kg_key, iat, envelope_key=None, *, cosigned_at=None, kg_old=None):
    """KZ's evidence for an envelope to KG dated ``iat``: checkpoint signed with
    ``kz_key`` (and the envelope too, unless ``envelope_key``), co-signed by KG with
    ``kg_key`` at ``cosigned_at`` (``iat`` unless given)."""
    envelope = seal(
        typ="alert/1",
        body=example_alert(),
        sender="KZ",
        signing_key=envelope_key or kz_key,
        recipients=[Recipient("KG", KG_ENC.kid, KG_ENC.public)],
        tl=1,
        iat=iat,
        ttl=3600,
    )
    entry = xb1json.dumps(
        {
            "kind": "message-submitted",
            "at": iat,
            "id": envelope.header.id,
            "ph": b64e(envelope.ph),
            "ch": b64e(envelope.ch),
        }
    )
    origin = log.origin_of(FEDERATION, "KZ")
    body = note.checkpoint_body(origin, 1, merkle.leaf_hash(entry))
    cosigned = note.add_signatures(
        note.sign_note(body, origin, kz_key),
        [note.cosign(body, log.origin_of(FEDERATION, "KG"), kg_key, cosigned_at or iat)],
    )
    return {
        "format": evidence.FORMAT,
        "node": "KZ",
        "message": envelope.header.id,
        "trust_list": _revoked_federation(kg_old).decode(),
        "checkpoint": cosigned,
        "entries": [{"seq": 1, "entry": b64e(entry), "proof": []}],
        "envelopes": [b64e(envelope.to_wire())],
        "receipts": [],
    }


def test_revoked_keys_vouch_for_no_evidence():
    """§5: a revoked key is refused for everything from revoked_at on, whatever a
    signature's own date says: a thief's checkpoint, co-signature or back-dated
    envelope made with it proves nothing."""
    good = evidence.check(_bundle(KZ_NEW, KG_NEW, NOW - 60), now=NOW)
    assert good["witnesses"] == ["KG"]
    for kz_key, kg_key, iat, envelope_key in (
        (KZ_NEW, KG_NEW, NOW - 60, KZ_OLD),  # the envelope by KZ's revoked key
        (KZ_NEW, KG_NEW, REVOKED_AT - 86400, KZ_OLD),  # ... back-dated
        (KZ_OLD, KG_NEW, NOW - 60, KZ_NEW),  # the checkpoint by KZ's revoked key
        (KZ_NEW, KG_OLD, NOW - 60, KZ_NEW),  # KG's revoked key co-signs
    ):
        with pytest.raises(evidence.EvidenceError):
            evidence.check(_bundle(kz_key, kg_key, iat, envelope_key), now=NOW)
    # Before the revocation the old keys were as good as the new ones.
    early = evidence.check(_bundle(KZ_OLD, KG_OLD, REVOKED_AT - 86400), now=REVOKED_AT - 1)
    assert early["witnesses"] == ["KG"]


def test_a_retired_key_cosigns_only_inside_its_window():
    """K1 of §5 for a co-signature, by the time it states: a retired witness key
    vouches for a checkpoint it co-signed while in use, not for one it co-signs after
    its window (its holder no longer guards it)."""
    retired = {"status": "retired", "not_before": NOW - 20 * 86400, "not_after": REVOKED_AT}
    inside = _bundle(KZ_NEW, KG_OLD, NOW - 60, cosigned_at=REVOKED_AT - 60, kg_old=retired)
    assert evidence.check(inside, now=NOW)["witnesses"] == ["KG"]
    for stated in (REVOKED_AT + 1, NOW - 20 * 86400 - 1):
        after = _bundle(KZ_NEW, KG_OLD, NOW - 60, cosigned_at=stated, kg_old=retired)
        with pytest.raises(evidence.EvidenceError, match="co-signature of KG does not verify"):
            evidence.check(after, now=NOW)
    # The same key active: any time will do.
    active = {"status": "active"}
    late = _bundle(KZ_NEW, KG_OLD, NOW - 60, cosigned_at=NOW - 1, kg_old=active)
    assert evidence.check(late, now=NOW)["witnesses"] == ["KG"]


def test_an_export_after_a_revocation_still_checks(make_federation):
    """A checkpoint co-signed with a key revoked since is exported without that line
    (or passed over for one that still verifies), so a fresh bundle checks."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    message_id = submit(kz, ["KG"])
    assert [o.state for o in Dispatcher(kz.node).run_once()] == ["delivered"]
    log.checkpoint(kz.node)
    assert Witness(kg.node).witness("KZ").problem is None  # KG co-signs KZ's checkpoint
    assert Witness(kz.node).collect("KG") == 1
    assert evidence.check(evidence.export(kz.node, message_id))["witnesses"] == ["KG"]
    revoke_signing_key(fed, "KG", revoked_ago=5)
    bundle = evidence.export(kz.node, message_id)
    summary = evidence.check(json.loads(json.dumps(bundle)))
    assert summary["witnesses"] == [] and summary["message"] == message_id
    assert bundle["receipts"] == []  # KG's receipt was signed with the key revoked since
    # KZ's own key revoked too: only a checkpoint signed with its new key will do.
    rotated = revoke_signing_key(fed, "KZ", revoked_ago=5)
    with pytest.raises(evidence.EvidenceError, match="usable now"):
        evidence.export(kz.node, message_id)
    kz.node.keys = rotated
    submit(kz, ["KG"])  # something new for a checkpoint signed with the new key
    log.checkpoint(kz.node)
    # The envelope, signed with the revoked key, proves nothing now: it is left out, and
    # the entries (under a checkpoint signed with the new key) are the evidence.
    bundle = evidence.export(kz.node, message_id)
    assert bundle["envelopes"] == [] and bundle["entries"]
    assert evidence.check(bundle)["shown"][0] == "message-submitted"


def test_the_trust_list_is_verified_from_the_federations_anchor(exchanged, tmp_path):
    """A bundle carries the versions before its trust list, so a checker verifies it
    from version 1 against the published anchor; a list the bundle made up does not
    follow from the anchor, however well it is signed."""
    fed, message_id = exchanged
    kz = fed["KZ"].node
    kz.install_trust_list(successor(fed, kz.trust()))
    log.checkpoint(kz)
    bundle = json.loads(json.dumps(evidence.export(kz, message_id)))
    anchor = bytes.fromhex(fed.anchor)
    summary = evidence.check(bundle, anchor=anchor)
    assert (summary["trust_list_version"], summary["anchor_version"]) == (2, 1)
    assert (summary["anchor"], summary["anchor_checked"]) == (fed.anchor, True)
    unchecked = evidence.check(bundle)  # the anchor to compare is version 1's
    assert (unchecked["anchor"], unchecked["anchor_checked"]) == (fed.anchor, False)
    with pytest.raises(evidence.EvidenceError, match="anchor"):
        evidence.check(bundle, anchor=b"\x07" * 32)
    # Without the versions before it, the list no longer follows from the anchor.
    with pytest.raises(evidence.EvidenceError, match="anchor"):
        evidence.check({**bundle, "trust_chain": []}, anchor=anchor)
    assert evidence.check({**bundle, "trust_chain": []})["anchor_version"] == 2
    # A version 1 of another federation's admins at the head of the chain.
    forged = {**bundle, "trust_chain": [rogue_version_1(kz.trust()).decode()]}
    with pytest.raises(evidence.EvidenceError, match="anchor"):
        evidence.check(forged, anchor=anchor)
    with pytest.raises(evidence.EvidenceError, match="trust list does not verify"):
        evidence.check(forged)  # version 2 is not the rogue version 1's successor

    out = tmp_path / "evidence.json"
    out.write_text(json.dumps(bundle))
    checked = CliRunner().invoke(main, ["audit", "check", str(out), "--anchor", fed.anchor])
    assert checked.exit_code == 0, checked.output
    assert "Trust list version 2, verified from version 1, whose SHA-256 is the anchor given" in (
        checked.output
    )
    compared = CliRunner().invoke(main, ["audit", "check", str(out)])
    assert f"whose SHA-256 is {fed.anchor}: compare it" in compared.output
    wrong = CliRunner().invoke(main, ["audit", "check", str(out), "--anchor", "07" * 32])
    assert wrong.exit_code == 1 and "EVIDENCE DOES NOT VERIFY" in wrong.output


def test_a_check_after_the_bundles_trust_list_expired_warns(exchanged, tmp_path, monkeypatch):
    fed, message_id = exchanged
    out = tmp_path / "evidence.json"
    out.write_text(json.dumps(evidence.export(fed["KZ"].node, message_id)))
    checked = CliRunner().invoke(main, ["audit", "check", str(out)])
    assert checked.exit_code == 0 and "WARNING" not in checked.output
    expires = fed["KZ"].node.trust().expires
    monkeypatch.setattr(time, "time", lambda: expires + 86_400.0)  # a month later
    later = CliRunner().invoke(main, ["audit", "check", str(out)])
    assert later.exit_code == 0, later.output
    assert "WARNING: trust list version 1 expired on" in later.stderr
    assert "a later version may have revoked one" in later.stderr


def test_a_message_sealed_again_for_a_recipient_has_evidence_that_checks(make_federation):
    """Re-sealing (the recipient's key was revoked while the delivery waited) puts a
    new envelope in the bundle: its hashes are in the log too (``message-resealed``),
    so the sender's bundle checks."""
    from tests.test_rotation import revoke_encryption_key

    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    message_id = submit(kz, ["KG"])
    revoke_encryption_key(fed, "KG", int(time.time()))
    assert [o.state for o in Dispatcher(kz.node).run_once()] == ["delivered"]
    log.checkpoint(kz.node)
    bundle = evidence.export(kz.node, message_id)
    assert len(bundle["envelopes"]) == 2
    summary = evidence.check(json.loads(json.dumps(bundle)))
    assert "message-resealed" in summary["shown"] and "receipt from KG accepted" in summary["shown"]
    # Purged (no envelope left): the receipt of the new envelope is named by its entry.
    purged = evidence.check({**json.loads(json.dumps(bundle)), "envelopes": []})
    assert "receipt from KG accepted" in purged["shown"]


def test_a_receipt_in_a_bundle_must_come_from_a_recipient_and_say_what_it_says(make_federation):
    """A bundle whose envelopes were left out (as after a purge) cannot be given a
    "delivery" by a receipt signed by the sender itself or by a member the message did
    not go to; and a signed refusal is shown as a refusal, not as a receipt."""
    from gateway.envelope import make_receipt, step1_parse_outer, step2_parse_header

    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg, uz = fed["KZ"], fed["KG"], fed["UZ"]
    kg.server.stop()  # never delivered: no receipt
    message_id = submit(kz, ["KG"])
    Dispatcher(kz.node).run_once()
    log.checkpoint(kz.node)
    bundle = json.loads(json.dumps(evidence.export(kz.node, message_id)))
    assert bundle["receipts"] == []
    [wire] = bundle["envelopes"]
    from schemas.b64 import b64d

    envelope = step2_parse_header(*step1_parse_outer(b64d(wire), kz.node.limits))
    now = int(time.time())
    for signer in (kz, uz):
        forged = make_receipt(
            envelope, receiver=signer.node.id, signing_key=signer.keys.current_signing, at=now
        )
        for envelopes in ([], [wire]):
            with pytest.raises(evidence.EvidenceError, match="receipt"):
                evidence.check({**bundle, "envelopes": envelopes, "receipts": [b64e(forged)]})
    refusal = make_receipt(
        envelope,
        receiver="KG",
        signing_key=kg.keys.current_signing,
        reason="policy-denied",
        at=now,
    )
    for envelopes in ([], [wire]):
        shown = evidence.check({**bundle, "envelopes": envelopes, "receipts": [b64e(refusal)]})
        assert "receipt from KG rejected policy-denied" in shown["shown"], shown["shown"]


def test_the_entries_of_a_bundle_are_in_log_order_each_once(exchanged):
    """Entries duplicated, reordered or carrying members of their own are refused (an
    entry dropped is not: the bundle is the exporting node's selection)."""
    fed, message_id = exchanged
    bundle = json.loads(json.dumps(evidence.export(fed["KZ"].node, message_id)))
    entries = bundle["entries"]
    assert len(entries) >= 2
    for changed in (
        [entries[0], *entries],
        [entries[1], entries[0], *entries[2:]],
        [{**entries[0], "note": "x"}, *entries[1:]],
        [{**entries[0], "seq": True}, *entries[1:]] if entries[0]["seq"] == 1 else None,
        [{**entries[0], "seq": float(entries[0]["seq"])}, *entries[1:]],
    ):
        if changed is None:
            continue
        with pytest.raises(evidence.EvidenceError):
            evidence.check({**bundle, "entries": changed})
    assert evidence.check({**bundle, "entries": entries[1:]})  # a selection
