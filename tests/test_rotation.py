"""Node key rotation and revocation without losing a message: new keys are used
once the trust list carries them, queued envelopes are sealed again when a key
under them is revoked, and retired private keys are destroyed only when nothing
can need them."""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from gateway.audit import log
from gateway.cli import main
from gateway.config import load_settings
from gateway.dispatcher import Dispatcher
from gateway.errors import NodeStateError
from gateway.models import AuditEntry, Delivery, DeliveryEvent, InboundMessage
from gateway.node import Node
from gateway.tokens import issue
from keys import sealed
from keys.keypair import SigningKeyPair
from keys.nodekeys import NodeKeys
from keys.sealed import MEMLIMIT_INTERACTIVE, MEMLIMIT_MIN, OPSLIMIT_INTERACTIVE, OPSLIMIT_MIN
from keys.trustlist import key_entry
from schemas.examples import example_alert, example_referral
from tests.conftest import PASSPHRASE
from tests.test_trust_follow import next_version, submit


def cli(member, *args):
    result = CliRunner().invoke(
        main,
        ["--instance", str(member.instance), *args],
        env={"GATEWAY_KEY_PASSPHRASE": PASSPHRASE},
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def install_everywhere(fed, wire):
    for member in fed.members.values():
        member.node.install_trust_list(wire)


def listed_keys(fed, node_id):
    return [k.to_entry() for k in fed[node_id].node.trust().node(node_id).keys]


def revoke_encryption_key(fed, node_id, now, *, drop=False):
    """Install, on every node, a version in which ``node_id``'s encryption key is
    revoked (or, with ``drop``, no longer listed) and a new one listed; the node holds
    both private keys."""
    member = fed[node_id]
    rotated = member.keys.rotate_encryption(now=now)
    keys = []
    for key in listed_keys(fed, node_id):
        if key["use"] == "enc":
            if drop:
                continue
            key.update(status="revoked", revoked_at=now - 1)
        keys.append(key)
    keys.append(
        key_entry(
            rotated.current_encryption.public, "enc", not_before=now - 60, not_after=now + 86400
        )
    )
    install_everywhere(fed, next_version(fed, fed["KZ"].node.trust(), node_keys={node_id: keys}))
    member.node.keys = rotated


def revoke_signing_key(fed, node_id, *, revoked_ago):
    """Install, on every node, a version revoking ``node_id``'s signing key and listing
    a new one; returns the node's rotated key ring."""
    now = int(time.time())
    rotated = fed[node_id].keys.rotate_signing(now=now)
    keys = []
    for key in listed_keys(fed, node_id):
        if key["use"] == "sig":
            key.update(status="revoked", revoked_at=now - revoked_ago)
        keys.append(key)
    keys.append(
        key_entry(rotated.current_signing.public, "sig", not_before=now - 60, not_after=now + 86400)
    )
    install_everywhere(fed, next_version(fed, fed[node_id].node.trust(), node_keys={node_id: keys}))
    return rotated


def test_rotate_prints_the_entry_and_the_new_key_signs_once_listed(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    old_sig = kz.keys.current_signing
    entry = json.loads(
        cli(
            kz,
            "keys",
            "rotate",
            "--sig",
            "--enc",
            "--name",
            "Kazakhstan",
            "--endpoint",
            kz.server.url,
        )
    )
    statuses = sorted((k["use"], k["status"]) for k in entry["keys"])
    assert statuses == [
        ("enc", "active"),
        ("enc", "retired"),
        ("sig", "active"),
        ("sig", "retired"),
    ]
    ring = NodeKeys.load(kz.instance / "node-keys.json", PASSPHRASE)
    assert ring.current_signing.kid != old_sig.kid
    assert {k["kid"] for k in entry["keys"]} == {k.kid for k in ring.signing + ring.encryption}

    kz.node.keys = ring
    assert kz.node.signing_pair().kid == old_sig.kid  # peers do not know the new key yet
    install_everywhere(fed, next_version(fed, kz.node.trust(), node_keys={"KZ": entry["keys"]}))
    assert kz.node.signing_pair().kid == ring.current_signing.kid


def test_a_queued_envelope_is_sealed_again_when_the_recipient_key_is_revoked(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    message_id = submit(kz, ["KG"])  # sealed to KG's current encryption key
    revoke_encryption_key(fed, "KG", int(time.time()))

    [outcome] = Dispatcher(kz.node).run_once()
    assert outcome.state == "delivered"
    with kz.node.sessions() as session:
        delivery = session.scalars(select(Delivery)).one()
        events = session.scalars(select(DeliveryEvent).order_by(DeliveryEvent.id)).all()
    assert delivery.envelope_id != message_id
    assert [(e.state, e.code) for e in events] == [
        ("queued", None),
        ("sending", "resealed"),
        ("delivered", None),
    ]
    assert "revoked" in events[1].detail
    inbox = kg.client().get("/api/v1/inbox", headers=kg.auth()).get_json()["messages"]
    assert [m["envelope_id"] for m in inbox] == [delivery.envelope_id]
    assert len(kg.posts) == 1  # the envelope under the revoked key never left


def test_a_queued_envelope_is_sealed_again_when_our_signing_key_is_revoked(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    kz.node.keys = revoke_signing_key(fed, "KZ", revoked_ago=1)
    [outcome] = Dispatcher(kz.node).run_once()
    assert outcome.state == "delivered"
    inbox = kg.client().get("/api/v1/inbox", headers=kg.auth()).get_json()["messages"]
    assert len(inbox) == 1


def _own_signing_key_revoked_alone(fed, node_id):
    """Install, on every node, a version revoking ``node_id``'s signing key without
    listing a new one (the administrators acted on a theft before the node rotated);
    return the ring rotated meanwhile, whose new key the list does not carry yet."""
    now = int(time.time())
    rotated = fed[node_id].keys.rotate_signing(now=now)
    keys = []
    for key in listed_keys(fed, node_id):
        if key["use"] == "sig":
            key.update(status="revoked", revoked_at=now - 1)
        keys.append(key)
    install_everywhere(fed, next_version(fed, fed[node_id].node.trust(), node_keys={node_id: keys}))
    fed[node_id].node.keys = rotated
    return rotated, keys


def _list_new_signing_key(fed, node_id, rotated, keys):
    now = int(time.time())
    keys = [*keys, key_entry(rotated.current_signing.public, "sig", not_before=now - 60)]
    install_everywhere(fed, next_version(fed, fed[node_id].node.trust(), node_keys={node_id: keys}))


def test_a_node_whose_signing_keys_are_all_unusable_signs_nothing(make_federation, caplog):
    """KZ's signing key is revoked and its new one not listed yet: what KZ would sign,
    peers would refuse. A submission is refused (503 signing-key-unusable, nothing
    stored); a queued message is not sealed anew under the revoked key at every attempt
    but waits, `retrying` with that code; an envelope KG sends is not accepted with a
    receipt nobody could verify (its stored receipt would answer every retry) but
    refused for now, unsigned, and KG's dispatcher tries again; no checkpoint is signed.
    Once the list carries KZ's new key, all of it goes through."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    submit(kg, ["KZ"])
    rotated, keys = _own_signing_key_revoked_alone(fed, "KZ")

    answer = kz.client().post(
        "/api/v1/messages",
        headers=kz.auth(),
        json={"typ": "alert/1", "body": example_alert(), "to": ["KG"]},
    )
    assert (answer.status_code, answer.get_json()["error"]) == (503, "signing-key-unusable")
    assert "gateway keys check" in answer.get_json()["message"]
    [waiting] = Dispatcher(kz.node).run_once()
    assert (waiting.state, waiting.code) == ("retrying", "signing-key-unusable")
    assert kg.posts == []
    with kz.node.sessions() as session:
        assert len(session.scalars(select(Delivery)).all()) == 1
        resealed = session.scalars(
            select(AuditEntry).where(AuditEntry.kind == "message-resealed")
        ).all()
        assert resealed == []
    [refused] = Dispatcher(kg.node).run_once()
    assert (refused.state, refused.code) == ("retrying", "peer-error")
    assert "signing-key-unusable" in refused.detail
    with kz.node.sessions() as session:
        assert session.scalars(select(InboundMessage)).all() == []
    with pytest.raises(NodeStateError) as raised:
        log.checkpoint(kz.node, min_new=1)
    assert raised.value.code == "signing-key-unusable"
    # A dispatcher tries at every round and says so once a minute, not at every round.
    dispatcher = Dispatcher(kz.node)
    with caplog.at_level(logging.WARNING, logger="gateway.dispatcher"):
        for _ in range(3):
            assert dispatcher._maybe_checkpoint(-1e9) == -1e9
    said = [r.message for r in caplog.records if "audit checkpoint failed" in r.message]
    assert len(said) == 1 and "[signing-key-unusable]" in said[0]
    with kz.node.sessions() as session:
        observer = issue(session, "kz-dpo", "oversight", role="observer").secret
        session.commit()
    keys_view = kz.client().get(
        "/api/v1/admin/keys", headers={"Authorization": f"Bearer {observer}"}
    )
    assert keys_view.get_json()["signs_with"] is None

    _list_new_signing_key(fed, "KZ", rotated, keys)
    for member in (kz, kg):  # due now, not after the backoff
        with member.node.sessions() as session:
            session.execute(update(Delivery).values(next_attempt_at=0))
            session.commit()
    [sent] = Dispatcher(kz.node).run_once()
    assert sent.state == "delivered", sent
    [accepted] = Dispatcher(kg.node).run_once()
    assert accepted.state == "delivered"
    with kg.node.sessions() as session:
        receipt = session.scalars(select(Delivery.receipt)).one()
    assert rotated.current_signing.kid in json.dumps(_receipt_header(receipt))
    assert kz.node.signing_pair().kid == rotated.current_signing.kid
    assert log.checkpoint(kz.node, min_new=1) is not None


def test_a_node_that_may_sign_nothing_follows_the_list_a_peer_announces(make_federation):
    """KZ's key is revoked and the version listing its new one reached KG first: the
    envelope KG sends is not taken (503, KG tries again) but announces that version,
    which KZ then fetches from KG, and signs again. An envelope nobody signed is
    refused as always (it needs no signature of KZ's), and recorded."""
    from gateway.models import InboundRejection
    from gateway.trust_sync import TrustFollower

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    rotated, keys = _own_signing_key_revoked_alone(fed, "KZ")
    garbage = kz.client().post("/xb1/envelopes", data=b"garbage")
    assert (garbage.status_code, garbage.get_json()["error"]) == (400, "malformed")
    with kz.node.sessions() as session:
        assert [r.code for r in session.scalars(select(InboundRejection))] == ["malformed"]

    now = int(time.time())
    listed = [*keys, key_entry(rotated.current_signing.public, "sig", not_before=now - 60)]
    kg.node.install_trust_list(next_version(fed, kg.node.trust(), node_keys={"KZ": listed}))
    assert (kz.node.trust().version, kg.node.trust().version) == (2, 3)
    submit(kg, ["KZ"])
    [refused] = Dispatcher(kg.node).run_once()
    assert (refused.state, refused.code) == ("retrying", "peer-error")
    assert "signing-key-unusable" in refused.detail
    followed = TrustFollower(kz.node).run_once()
    assert followed is not None and kz.node.trust().version == 3
    with kg.node.sessions() as session:
        session.execute(update(Delivery).values(next_attempt_at=0))
        session.commit()
    [accepted] = Dispatcher(kg.node).run_once()
    assert accepted.state == "delivered"
    with kg.node.sessions() as session:
        receipt = session.scalars(select(Delivery.receipt)).one()
    assert _receipt_header(receipt)["from"]["kid"] == rotated.current_signing.kid


def _receipt_header(receipt: bytes) -> dict:
    from schemas.b64 import b64d

    return json.loads(b64d(json.loads(receipt)["protected"]))


def test_prune_destroys_only_keys_nothing_can_need(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kg = fed["KG"]
    entry = json.loads(
        cli(kg, "keys", "rotate", "--enc", "--name", "Kyrgyzstan", "--endpoint", kg.server.url)
    )
    old_enc = next(k for k in entry["keys"] if k["use"] == "enc" and k["status"] == "retired")
    install_everywhere(fed, next_version(fed, kg.node.trust(), node_keys={"KG": entry["keys"]}))
    # Still listed (retired, within its window): kept.
    assert "Nothing to prune." in cli(kg, "keys", "prune")
    # The administrators drop the old key from the list: now it goes.
    keys = [k for k in entry["keys"] if k["kid"] != old_enc["kid"]]
    install_everywhere(fed, next_version(fed, kg.node.trust(), node_keys={"KG": keys}))
    assert f"Destroyed retired key {old_enc['kid']}." in cli(kg, "keys", "prune")
    ring = NodeKeys.load(kg.instance / "node-keys.json", PASSPHRASE)
    assert old_enc["kid"] not in {k.kid for k in ring.encryption}
    assert len(ring.signing) == 1 and len(ring.encryption) == 1


def test_prune_keeps_a_retired_key_for_max_ttl_after_its_window_and_never_a_revoked_one(
    make_federation,
):
    """A retired key's window ended: an envelope sealed to it at the end of its window
    may still be valid for max_ttl, so the key stays that long, then goes. A key the
    list revokes goes at once (it may be in a thief's hands; nothing may use it)."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kg = fed["KG"]
    entry = json.loads(
        cli(kg, "keys", "rotate", "--enc", "--sig", "--name", "Kyrgyzstan", "--endpoint",
            kg.server.url)
    )  # fmt: skip
    old_enc = next(k for k in entry["keys"] if k["use"] == "enc" and k["status"] == "retired")
    old_sig = next(k for k in entry["keys"] if k["use"] == "sig" and k["status"] == "retired")
    now, max_ttl = int(time.time()), kg.node.settings.max_ttl

    def listed(enc_not_after: int, sig_status: str) -> None:
        keys = []
        for key in entry["keys"]:
            key = dict(key)
            if key["kid"] == old_enc["kid"]:
                key.update(not_before=min(key["not_before"], enc_not_after - 60))
                key["not_after"] = enc_not_after
            if key["kid"] == old_sig["kid"] and sig_status == "revoked":
                key.update(status="revoked", revoked_at=now - 60)
            keys.append(key)
        install_everywhere(fed, next_version(fed, kg.node.trust(), node_keys={"KG": keys}))

    listed(now - max_ttl + 3600, "retired")  # window over, max_ttl not yet
    assert "Nothing to prune." in cli(kg, "keys", "prune")
    listed(now - max_ttl + 3600, "revoked")
    assert cli(kg, "keys", "prune").split("\n")[:1] == [f"Destroyed retired key {old_sig['kid']}."]
    listed(now - max_ttl - 3600, "revoked")  # and max_ttl over too
    assert f"Destroyed retired key {old_enc['kid']}." in cli(kg, "keys", "prune")
    ring = NodeKeys.load(kg.instance / "node-keys.json", PASSPHRASE)
    assert len(ring.signing) == 1 and len(ring.encryption) == 1


def test_a_running_node_picks_up_keys_rotated_by_another_process(make_federation):
    from gateway.config import load_settings
    from gateway.node import Node

    fed = make_federation(("KZ", "KG"), serve=False)
    kg = fed["KG"]
    running = Node(load_settings(kg.instance, key_passphrase=PASSPHRASE))  # as a server does
    assert len(running.keys.encryption) == 1
    cli(kg, "keys", "rotate", "--enc", "--name", "Kyrgyzstan", "--endpoint", kg.server.url)
    assert len(running.keys.encryption) == 2  # re-read from the changed key file
    running.engine.dispose()


def test_unread_messages_signed_with_a_key_revoked_later_are_held(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    first = submit(kz, ["KG"])
    Dispatcher(kz.node).run_once()
    read = kg.client().get("/api/v1/inbox", headers=kg.auth()).get_json()["messages"]
    assert [m["envelope_id"] for m in read] == [first]  # read by an agency: processed
    second = submit(kz, ["KG"])
    Dispatcher(kz.node).run_once()  # arrives, not read yet

    # KZ's signing key is found to be stolen: the next version revokes it.
    revoke_signing_key(fed, "KZ", revoked_ago=3600)

    client = kg.client()
    listed = client.get("/api/v1/inbox", headers=kg.auth()).get_json()["messages"]
    assert [m["envelope_id"] for m in listed] == [first]  # the held one is not shown
    with kg.node.sessions() as session:
        from gateway.models import InboundMessage

        held = session.scalars(
            select(InboundMessage).where(InboundMessage.envelope_id == second)
        ).one()
    answer = client.get(f"/api/v1/inbox/{held.id}", headers=kg.auth())
    assert (answer.status_code, answer.get_json()["error"]) == (409, "quarantined")
    shown = cli(kg, "inbox", "quarantined")
    assert second in shown and "revoked in trust list version 2" in shown
    assert "HELD" in cli(kg, "inbox", "list")

    released = cli(
        kg,
        "inbox",
        "release",
        str(held.id),
        "--reason",
        "confirmed with KZ duty officer by phone",
        "--by",
        "KG operator",
    )
    assert f"Inbound message {held.id} released" in released
    listed = client.get("/api/v1/inbox", headers=kg.auth()).get_json()["messages"]
    assert [m["envelope_id"] for m in listed] == [first, second]
    assert cli(kg, "inbox", "quarantined").strip() == ""


def test_a_message_corrected_by_a_held_correction_is_held_too(make_federation):
    """An agency read an alert; a correction of it arrived (and replaced its body) but
    was not read yet; then the sender's key is found stolen. The correction is held,
    and so is the alert, read or not: what it shows now came from the correction."""
    from schemas.examples import example_correction

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    original = submit(kz, ["KG"])
    Dispatcher(kz.node).run_once()
    [read] = kg.client().get("/api/v1/inbox", headers=kg.auth()).get_json()["messages"]
    assert read["envelope_id"] == original
    fix = example_correction(refers_to=original)
    fix["body"]["subjects"][0]["date_of_birth"] = "1999-09-09"
    answer = kz.client().post(
        "/api/v1/messages", headers=kz.auth(), json={"typ": "correction/1", "body": fix}
    )
    assert answer.status_code == 202, answer.get_json()
    Dispatcher(kz.node).run_once()
    shown = kg.client().get(f"/api/v1/inbox/{read['id']}", headers=kg.auth()).get_json()
    assert shown["body"]["subjects"][0]["date_of_birth"] == "1999-09-09"

    revoke_signing_key(fed, "KZ", revoked_ago=3600)

    answer = kg.client().get(f"/api/v1/inbox/{read['id']}", headers=kg.auth())
    assert (answer.status_code, answer.get_json()["error"]) == (409, "quarantined")
    assert kg.client().get("/api/v1/inbox", headers=kg.auth()).get_json()["messages"] == []
    held = cli(kg, "inbox", "quarantined")
    assert original in held and "corrected by a message signed" in held


def test_a_release_made_with_the_held_correction_in_view_stands_at_later_versions(
    make_federation,
):
    """The correction and the message it corrected are held; the operator releases the
    message alone (the correction confirmed, or its data checked). A later version that
    still lists the key as revoked (a routine renewal) does not hold it again."""
    from schemas.examples import example_correction
    from tests.test_corrections import inbound, release

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    original = submit(kz, ["KG"])
    fix = example_correction(refers_to=original)
    answer = kz.client().post(
        "/api/v1/messages", headers=kz.auth(), json={"typ": "correction/1", "body": fix}
    )
    assert answer.status_code == 202, answer.get_json()
    Dispatcher(kz.node).run_once()
    revoke_signing_key(fed, "KZ", revoked_ago=3600)
    row = inbound(kg, original)
    assert row.held
    release(kg, row.id)

    install_everywhere(fed, next_version(fed, kg.node.trust()))  # v3: the same revocation

    row = inbound(kg, original)
    assert not row.held and row.released_by == "KG operator", row.quarantine_reason
    read = kg.client().get(f"/api/v1/inbox/{row.id}", headers=kg.auth())
    assert read.status_code == 200, read.get_json()


def test_a_released_message_is_held_again_when_a_held_correction_replaced_it(make_federation):
    """A message held once and released after checking, then corrected: when the
    correction is held, so is the message again, with the new reason."""
    from schemas.examples import example_correction
    from tests.test_corrections import hold, inbound, release

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    original = submit(kz, ["KG"])
    Dispatcher(kz.node).run_once()
    release(kg, hold(kg, original))  # an earlier episode, checked and released
    fix = example_correction(refers_to=original)
    answer = kz.client().post(
        "/api/v1/messages", headers=kz.auth(), json={"typ": "correction/1", "body": fix}
    )
    assert answer.status_code == 202, answer.get_json()
    Dispatcher(kz.node).run_once()
    assert inbound(kg, original).state == "corrected"

    revoke_signing_key(fed, "KZ", revoked_ago=3600)

    row = inbound(kg, original)
    assert row.held and row.released_at is None
    assert row.quarantine_reason.startswith("corrected by a message signed")
    # The next release is numbered after every earlier one, this message's too: an
    # agency paging by release number would otherwise miss it.
    with kg.node.sessions() as session:
        [correction] = session.scalars(
            select(InboundMessage).where(
                InboundMessage.typ == "correction/1", InboundMessage.quarantined_at.is_not(None)
            )
        ).all()
        correction_id = correction.id
    release(kg, correction_id)
    with kg.node.sessions() as session:
        assert session.get(InboundMessage, correction_id).released_seq == row.released_seq + 1


def test_keys_create_makes_a_ring_once(tmp_path):
    folder = tmp_path / "node"
    folder.mkdir()
    (folder / "gateway.toml").write_text('node = "TJ"\n')
    runner = CliRunner()
    env = {"GATEWAY_KEY_PASSPHRASE": PASSPHRASE}
    made = runner.invoke(main, ["--instance", str(folder), "keys", "create"], env=env)
    assert made.exit_code == 0, made.output
    ring = NodeKeys.load(folder / "node-keys.json", PASSPHRASE)
    assert ring.node == "TJ" and ring.current_signing.kid in made.output
    again = runner.invoke(main, ["--instance", str(folder), "keys", "create"], env=env)
    assert again.exit_code == 2 and "error [keys-exist]" in again.output
    assert NodeKeys.load(folder / "node-keys.json", PASSPHRASE) == ring  # untouched


def test_reseal_changes_the_passphrase_and_strengthens_a_weak_file(make_federation, monkeypatch):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    monkeypatch.setattr(sealed, "WEAK_BELOW", (OPSLIMIT_INTERACTIVE, MEMLIMIT_INTERACTIVE))
    shown = CliRunner().invoke(
        main,
        ["--instance", str(kz.instance), "keys", "show"],
        env={"GATEWAY_KEY_PASSPHRASE": PASSPHRASE},
    )
    assert shown.exit_code == 0 and "weak key-derivation settings" in shown.stderr
    resealed = CliRunner().invoke(
        main,
        ["--instance", str(kz.instance), "keys", "reseal"],
        env={"GATEWAY_KEY_PASSPHRASE": PASSPHRASE, "GATEWAY_NEW_KEY_PASSPHRASE": "new words"},
    )
    assert resealed.exit_code == 0, resealed.output
    assert "sealed again" in resealed.stdout
    document = json.loads(Path(kz.node.settings.key_file).read_text())
    assert (document["kdf"]["opslimit"], document["kdf"]["memlimit"]) == (
        sealed.OPSLIMIT_MODERATE,
        sealed.MEMLIMIT_MODERATE,
    )
    with pytest.raises(sealed.KeyFileError):
        NodeKeys.load(kz.node.settings.key_file, PASSPHRASE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ring = NodeKeys.load(kz.node.settings.key_file, "new words")
    assert ring.to_secret_json() == kz.keys.to_secret_json()


def test_a_key_file_sealed_again_is_tried_once_per_change_by_a_running_node(
    make_federation, caplog
):
    """A running process holds the old passphrase: after a reseal it keeps its keys
    and says so once, instead of deriving a key from the old passphrase on every
    refresh."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    tries = []

    def load():
        tries.append(1)
        return NodeKeys.load(kz.node.settings.key_file, PASSPHRASE)

    node = Node(load_settings(kz.instance), keys=load)  # as a server opens it
    before = node.keys
    kz.keys.save(node.settings.key_file, "new words", opslimit=OPSLIMIT_MIN, memlimit=MEMLIMIT_MIN)
    for _ in range(3):
        node._key_file_checked_at = float("-inf")  # whatever trust_refresh says
        assert node.keys is before
    assert len(tries) == 2  # at start, and once after the change
    assert caplog.text.count("changed but does not load") == 1
    node.engine.dispose()


def test_a_key_file_a_running_node_can_no_longer_read_keeps_its_keys(make_federation, caplog):
    """A key file replaced by something the process cannot read (here a folder; as
    well a file rewritten by another user): the node keeps its keys and logs the
    error once, instead of failing the requests that use them."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    node = Node(
        load_settings(kz.instance),
        keys=lambda: NodeKeys.load(kz.node.settings.key_file, PASSPHRASE),
    )
    before = node.keys
    key_file = Path(node.settings.key_file)
    key_file.unlink()
    key_file.mkdir()
    for _ in range(3):
        node._key_file_checked_at = float("-inf")
        assert node.keys is before
    assert caplog.text.count("changed but does not load") == 1
    assert "IsADirectoryError" not in caplog.text  # a line, not a traceback
    node.engine.dispose()


def test_another_nodes_key_file_put_in_place_is_not_taken(make_federation, caplog):
    """The key file replaced by another node's (same passphrase): the running node
    keeps its own keys and says so once."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz, kg = fed["KZ"], fed["KG"]
    node = Node(
        load_settings(kz.instance),
        keys=lambda: NodeKeys.load(kz.node.settings.key_file, PASSPHRASE),
    )
    before = node.keys
    kg.keys.save(node.settings.key_file, PASSPHRASE, opslimit=OPSLIMIT_MIN, memlimit=MEMLIMIT_MIN)
    for _ in range(3):
        node._key_file_checked_at = float("-inf")
        assert node.keys is before
    assert caplog.text.count("changed but does not load: [keys-wrong-node]") == 1
    node.engine.dispose()


def test_checkpoints_go_on_after_the_key_of_the_last_one_leaves_the_list(make_federation):
    """The stored state a new checkpoint continues from is checked against what the last
    checkpoint states, not against a signature only keys still listed could verify."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    submit(kz, ["KG"])
    first = log.checkpoint(kz.node)
    now = int(time.time())
    rotated = kz.keys.rotate_signing(now=now)
    keys = [key for key in listed_keys(fed, "KZ") if key["use"] == "enc"]
    keys.append(key_entry(rotated.current_signing.public, "sig", not_before=now - 60))
    install_everywhere(fed, next_version(fed, kz.node.trust(), node_keys={"KZ": keys}))
    kz.node.keys = rotated
    submit(kz, ["KG"])
    second = log.checkpoint(kz.node)
    assert second is not None and second.size > first.size


def test_a_pager_past_a_held_message_finds_it_once_released(make_federation):
    """Agency systems page with ``after``; a message held in quarantine is passed over.
    Once released it comes back through ``released_after``, exactly once."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    client = kg.client()

    def page(**cursors):
        query = "&".join(f"{name}={value}" for name, value in cursors.items())
        answer = client.get(f"/api/v1/inbox?{query}", headers=kg.auth())
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        return [m["envelope_id"] for m in body["messages"]], body

    first = submit(kz, ["KG"])
    Dispatcher(kz.node).run_once()
    _, start = page(after=0)  # read: processed, never held
    second, fourth = submit(kz, ["KG"]), submit(kz, ["KG"])
    Dispatcher(kz.node).run_once()
    kz.node.keys = revoke_signing_key(fed, "KZ", revoked_ago=3600)  # holds both
    third = submit(kz, ["KG"])
    Dispatcher(kz.node).run_once()
    shown, body = page(after=start["next_after"])
    assert shown == [third]
    assert body["next_released_after"] == 0  # no release yet: the cursor to follow
    after, released_after = body["next_after"], body["next_released_after"]
    for held in (fourth, second):  # released in the other order than they came
        with kg.node.sessions() as session:
            held_id = session.scalars(
                select(InboundMessage.id).where(InboundMessage.envelope_id == held)
            ).one()
        cli(kg, "inbox", "release", str(held_id), "--reason", "confirmed by phone", "--by", "op")

    assert page(after=after)[0] == []  # without the release cursor: as before
    assert page(after=after)[1]["next_released_after"] == 2
    shown, body = page(after=after, released_after=released_after)
    assert shown == [fourth, second] and body["next_after"] == after  # in release order
    assert page(after=body["next_after"], released_after=body["next_released_after"])[0] == []
    shown, body = page(after=after, released_after=released_after, limit=1)
    assert shown == [fourth] and body["next_released_after"] == 1
    # A pager that had not reached them yet gets each once, in id order, page after
    # page (one message a page), and nothing again after.
    seen, cursors = [], {"after": start["next_after"], "released_after": released_after}
    for _ in range(6):
        shown, body = page(**cursors, limit=1)
        seen += shown
        cursors = {"after": body["next_after"], "released_after": body["next_released_after"]}
    assert sorted(seen) == sorted([second, fourth, third]) and first not in seen


def test_the_release_cursor_stops_where_the_scan_stopped(make_federation, monkeypatch):
    """The release part of a page reads a bounded number of rows (corrections of types
    the reader may not read are read and left out): where it stops, the next page
    goes on, and no release behind it is passed over."""
    from gateway import inbox
    from tests.test_corrections import arrive, correcting
    from tests.test_corrections import sealed as sealed_by

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    at = int(time.time())
    referral = sealed_by(kz, "referral/1", example_referral(), at)
    unreadable = correcting(referral.header.id, "2001-01-01")
    unreadable.update(refers_to_type="referral/1", body=example_referral())
    hidden = sealed_by(kz, "correction/1", unreadable, at)  # for an officer: a referral
    alert = sealed_by(kz, "alert/1", example_alert(), at)
    for envelope in (hidden, alert):
        arrive(kg, envelope)
    with kg.node.sessions() as session:
        rows = session.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
        for number, row in enumerate(rows, start=1):  # held, then released in this order
            row.quarantined_at, row.released_at, row.released_seq = at, at, number
        session.commit()
        after = rows[-1].id
    monkeypatch.setattr(inbox, "MAX_SCAN", 0)
    officer = inbox.Reader(
        "kg-police", "case 1", None, None, frozenset({"alert/1", "correction/1"}), None, False
    )
    seen, released_after = [], 0
    for _ in range(3):
        with kg.node.sessions() as session:
            page = inbox.inbox_page(
                session, after=after, limit=1, reader=officer, released_after=released_after
            )
            seen += [m.envelope_id for m in page.messages]
        released_after = page.next_released_after
    assert seen == [alert.header.id]


def test_a_message_held_while_a_page_is_read_is_left_for_after_its_release(
    make_federation, monkeypatch
):
    """A revocation may hold a message between the page's query and its marking as
    read: the page leaves it out, unread, and the release cursor brings it later."""
    from gateway import inbox
    from tests.test_corrections import arrive, hold, inbound, release
    from tests.test_corrections import sealed as sealed_by

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    message = sealed_by(kz, "alert/1", example_alert(), int(time.time()))
    arrive(kg, message)
    mark = inbox._mark_fetched

    def held_meanwhile(session, messages, reader):
        hold(kg, message.header.id)  # committed by another transaction
        mark(session, messages, reader)

    monkeypatch.setattr(inbox, "_mark_fetched", held_meanwhile)
    client = kg.client()
    first = client.get("/api/v1/inbox?after=0&released_after=0", headers=kg.auth()).get_json()
    assert first["messages"] == []
    monkeypatch.undo()
    row = inbound(kg, message.header.id)
    assert row.held and row.fetched_at is None
    release(kg, row.id)
    cursors = f"after={first['next_after']}&released_after={first['next_released_after']}"
    later = client.get(f"/api/v1/inbox?{cursors}", headers=kg.auth()).get_json()
    assert [m["envelope_id"] for m in later["messages"]] == [message.header.id]


def test_a_message_held_while_it_is_read_alone_is_not_given(make_federation, monkeypatch):
    """The same between the check of one message and its marking: 409, not its body,
    and no read recorded."""
    from gateway import inbox
    from tests.test_corrections import arrive, hold, inbound
    from tests.test_corrections import sealed as sealed_by

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    message = sealed_by(kz, "alert/1", example_alert(), int(time.time()))
    arrive(kg, message)
    row_id = inbound(kg, message.header.id).id
    mark = inbox._mark_fetched

    def held_meanwhile(session, messages, reader):
        hold(kg, message.header.id)  # committed by another transaction
        mark(session, messages, reader)

    monkeypatch.setattr(inbox, "_mark_fetched", held_meanwhile)
    answer = kg.client().get(f"/api/v1/inbox/{row_id}", headers=kg.auth())
    assert (answer.status_code, answer.get_json()["error"]) == (409, "quarantined")
    assert "body" not in answer.get_json()
    row = inbound(kg, message.header.id)
    assert row.held and row.fetched_at is None
    with kg.node.sessions() as session:
        reads = session.scalars(select(AuditEntry).where(AuditEntry.kind == "inbox-read")).all()
    assert reads == []


def _kg_rotated_first(fed):
    """KG rotates its signing key and installs the version listing the new one; KZ has
    not installed it yet. The new key."""
    kg = fed["KG"]
    now = int(time.time())
    rotated = kg.keys.rotate_signing(now=now)
    keys = []
    for key in listed_keys(fed, "KG"):
        if key["use"] == "sig":
            key.update(status="retired", not_after=now + 30 * 86400)
        keys.append(key)
    new = rotated.current_signing
    keys.append(key_entry(new.public, "sig", not_before=now - 60, not_after=now + 365 * 86400))
    kg.node.install_trust_list(next_version(fed, kg.node.trust(), node_keys={"KG": keys}))
    kg.node.keys = rotated
    assert (fed["KZ"].node.trust().version, kg.node.trust().version) == (1, 2)
    return new


def test_a_receipt_by_a_key_the_sender_does_not_know_yet_makes_it_follow(make_federation):
    """KG's receipt is signed with a key KZ cannot verify yet: KZ fetches the newer list
    from KG after the attempt, and KG's stored receipt then verifies (it stayed
    retrying, receipt-invalid, the message sent again and again until it expired,
    unless someone ran 'gateway trust fetch')."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    _kg_rotated_first(fed)
    submit(kz, ["KG"])
    [first] = Dispatcher(kz.node).run_once()
    assert (first.state, first.code) == ("retrying", "receipt-invalid")
    assert kz.node.trust().version == 2  # fetched from KG after the attempt
    [again] = Dispatcher(kz.node).run_once(now=int(time.time()) + 3600)
    assert again.state == "delivered"
    with kg.node.sessions() as session:
        assert session.query(InboundMessage).count() == 1


def test_a_signed_refusal_by_a_key_the_sender_does_not_know_yet_makes_it_follow(
    make_federation,
):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    _kg_rotated_first(fed)
    (kg.instance / "policy.toml").write_text("version = 1\n", encoding="utf-8")  # denies all
    submit(kz, ["KG"])
    [first] = Dispatcher(kz.node).run_once()
    assert first.state == "retrying" and kz.node.trust().version == 2
    [again] = Dispatcher(kz.node).run_once(now=int(time.time()) + 3600)
    assert (again.state, again.code) == ("rejected", "policy-denied")


def test_receipts_by_unknown_keys_cost_one_fetch_from_their_signer_per_interval(
    make_federation, monkeypatch
):
    """A peer (or anyone on the path) answering with receipts by a key nobody lists:
    its own list is fetched once per interval, from it alone, and no alarm is raised
    (nothing signed says a newer version exists)."""
    from gateway import dispatcher as dispatcher_module
    from gateway.trust_sync import TrustFollower

    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg = fed["KZ"], fed["KG"]
    stranger = SigningKeyPair(b"\x09" * 32)
    kg.node.signing_pair = lambda now=None: stranger  # a key listed nowhere
    fetched = []
    real_follow = TrustFollower.follow

    def follow(self, peer, now=None):
        fetched.append(peer)
        return real_follow(self, peer, now)

    monkeypatch.setattr(TrustFollower, "follow", follow)
    dispatcher = Dispatcher(kz.node)
    for n in range(3):
        submit(kz, ["KG"])
        outcomes = dispatcher.run_once(now=int(time.time()) + 3600 * n)
        assert {(o.state, o.code) for o in outcomes} == {("retrying", "receipt-invalid")}
    assert fetched == ["KG"]
    monkeypatch.setattr(dispatcher_module, "RECEIPT_FOLLOW_INTERVAL", 0.0)
    dispatcher.run_once(now=int(time.time()) + 3600 * 4)
    assert fetched == ["KG", "KG"]
    ready = kz.client().get("/readyz")
    assert ready.status_code == 200, ready.get_json()
