"""An evidence bundle for one message verifies offline, with no database, and fails
when any byte of it changes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gateway.audit import evidence, log
from gateway.cli import main
from gateway.dispatcher import Dispatcher
from tests.conftest import PASSPHRASE
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
        assert summary["message"] == message_id and "receipt" in summary["shown"]
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
