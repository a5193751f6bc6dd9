"""A node collects its peers' co-signatures of its checkpoints; evidence bundles carry
them and the offline check names the witnesses."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import delete

from gateway.audit import evidence, log, note
from gateway.audit.witness import Witness
from gateway.models import AuditCheckpoint, WitnessState
from tests.test_trust_follow import submit


@pytest.fixture
def witnessed(make_federation):
    fed = make_federation(("KZ", "KG", "UZ"))
    message_id = submit(fed["KZ"], ["KG"])
    log.checkpoint(fed["KZ"].node)
    for peer in ("KG", "UZ"):
        assert Witness(fed[peer].node).witness("KZ").problem is None
    return fed, message_id


def _lines(text):
    return [name for name, _ in note.signature_lines(text)[1]]


def test_collected_cosignatures_are_kept_served_and_bundled(witnessed):
    fed, message_id = witnessed
    kz = fed["KZ"]
    collector = Witness(kz.node)
    assert collector.collect("KG") == 1
    assert collector.collect("UZ") == 1
    assert collector.collect("KG") == 0  # already kept
    served = kz.client().get("/xb1/checkpoint").data.decode()
    assert _lines(served) == [
        log.origin_of("test-federation", member) for member in ("KZ", "KG", "UZ")
    ]
    with kz.node.sessions() as session:
        assert log.verify(session, kz.node.trust(), "KZ").ok

    bundle = json.loads(json.dumps(evidence.export(kz.node, message_id)))
    assert evidence.check(bundle)["witnesses"] == ["KG", "UZ"]


def test_a_changed_or_foreign_cosignature_fails_the_bundle(witnessed):
    fed, message_id = witnessed
    collector = Witness(fed["KZ"].node)
    collector.collect("KG")
    bundle = evidence.export(fed["KZ"].node, message_id)
    body, lines = note.signature_lines(bundle["checkpoint"])
    own, kg_line = lines[0][1], lines[1][1]
    blob = kg_line.rsplit(" ", 1)[1]
    changed = kg_line[: -len(blob)] + ("A" if blob[20] != "A" else "B").join((blob[:20], blob[21:]))
    with pytest.raises(evidence.EvidenceError, match="co-signature of KG"):
        evidence.check({**bundle, "checkpoint": body + "\n" + own + changed})
    renamed = kg_line.replace("/KG ", "/XX ")
    with pytest.raises(evidence.EvidenceError, match="not a member"):
        evidence.check({**bundle, "checkpoint": body + "\n" + own + renamed})
    # The node's own signature line cannot be dropped either.
    with pytest.raises(evidence.EvidenceError):
        evidence.check({**bundle, "checkpoint": body + "\n" + kg_line})


def test_a_bad_cosignature_is_not_collected(witnessed):
    fed, _ = witnessed
    with fed["KG"].node.sessions() as session:
        state = session.get(WitnessState, "KZ")
        body, lines = note.signature_lines(state.cosigned)
        # KG's co-signature replaced by one made with UZ's key under KG's name.
        forged = note.cosign(
            body, log.origin_of("test-federation", "KG"), fed["UZ"].node.signing_pair(), 1
        )
        state.cosigned = body + "\n" + lines[0][1] + forged
        session.commit()
    assert Witness(fed["KZ"].node).collect("KG") == 0


def test_a_cosigned_checkpoint_the_node_never_signed_is_an_alarm(witnessed, caplog):
    fed, _ = witnessed
    with fed["KZ"].node.sessions() as session:
        session.execute(delete(AuditCheckpoint))
        session.commit()
    with caplog.at_level(logging.ERROR):
        assert Witness(fed["KZ"].node).collect("KG") == 0
    assert "audit-forged" in caplog.text


def test_a_peer_cannot_raise_a_false_forgery_alarm(witnessed, caplog):
    fed, _ = witnessed
    with fed["KG"].node.sessions() as session:
        state = session.get(WitnessState, "KZ")
        # KG co-signs a body KZ never signed, and serves it without KZ's signature.
        made_up = note.checkpoint_body(log.origin_of("test-federation", "KZ"), 99, b"\x01" * 32)
        line = note.cosign(
            made_up, log.origin_of("test-federation", "KG"), fed["KG"].node.signing_pair(), 1
        )
        state.cosigned = made_up + "\n" + line
        session.commit()
    with caplog.at_level(logging.WARNING):
        assert Witness(fed["KZ"].node).collect("KG") == 0
    assert (
        "audit-forged" not in caplog.text and "without this node's valid signature" in caplog.text
    )
