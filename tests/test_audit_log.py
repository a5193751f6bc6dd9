"""The node's audit log on SQLite and PostgreSQL: actions are logged in their own
transaction, checkpoints are signed and served with proofs, and any change, deletion
or reordering of stored entries is found."""

from __future__ import annotations

import threading
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select, update

from gateway.audit import log, merkle, note
from gateway.cli import main
from gateway.dispatcher import Dispatcher
from gateway.errors import NodeStateError
from gateway.models import AuditCheckpoint, AuditEntry
from schemas import xb1json
from schemas.b64 import b64d
from tests.conftest import PASSPHRASE
from tests.test_trust_follow import submit


def kinds(member):
    with member.node.sessions() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
    return [(r.seq, xb1json.loads(r.entry)) for r in rows]


def verify(member):
    with member.node.sessions() as session:
        return log.verify(session, member.node.trust(), member.id)


def test_actions_are_logged_and_checkpoints_prove_them(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    message_id = submit(kz, ["KG"])
    Dispatcher(kz.node).run_once()
    kg.client().get("/api/v1/inbox", headers=kg.auth())

    sent = [e for _, e in kinds(kz)]
    assert [e["kind"] for e in sent][-3:] == ["message-submitted", "delivery", "delivery"]
    assert sent[-3]["id"] == message_id and sent[-1]["state"] == "delivered"
    received = [e for _, e in kinds(kg)]
    accepted = next(e for e in received if e["kind"] == "envelope-accepted")
    assert accepted["id"] == message_id and accepted["sender"] == "KZ"
    read = next(e for e in received if e["kind"] == "inbox-read")
    assert read["agency"] == "kg-police" and read["messages"] == [["KZ", message_id]]
    assert all("body" not in e and "summary" not in str(e) for e in sent + received)

    first = log.checkpoint(kz.node)
    assert first is not None and log.checkpoint(kz.node) is None  # nothing new
    submit(kz, ["KG"])
    second = log.checkpoint(kz.node)
    assert second.size > first.size

    served = kz.client().get("/xb1/checkpoint")
    assert served.status_code == 200 and served.data.decode() == second.note
    origin = log.origin_of(kz.node.trust().federation, "KZ")
    body, names = note.open_note(second.note, {origin: kz.keys.current_signing.public})
    checkpoint = note.parse_checkpoint(body)
    assert names == [origin] and checkpoint.size == second.size

    with kz.node.sessions() as session:
        leaves = list(session.scalars(select(AuditEntry.leaf_hash).order_by(AuditEntry.seq)))
    for index in range(1, second.size + 1):
        proof = kz.client().get(f"/xb1/proofs/inclusion?index={index}&size={second.size}")
        answer = proof.get_json()
        assert merkle.verify_inclusion(
            leaves[index - 1],
            index - 1,
            second.size,
            [b64d(h) for h in answer["proof"]],
            checkpoint.root,
        )
    consistency = (
        kz.client().get(f"/xb1/proofs/consistency?old={first.size}&new={second.size}").get_json()
    )
    assert merkle.verify_consistency(
        first.size, second.size, first.root, second.root, [b64d(h) for h in consistency["proof"]]
    )
    bad = kz.client().get(f"/xb1/proofs/inclusion?index=0&size={second.size}")
    assert (bad.status_code, bad.get_json()["error"]) == (422, "bad-proof-request")
    assert verify(kz).ok


def test_any_change_deletion_or_reordering_is_found(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    for _ in range(3):
        submit(kz, ["KG"])
    log.checkpoint(kz.node)
    finding = verify(kz)
    assert finding.ok and finding.checkpoints == 1

    def tamper(statement):
        with kz.node.sessions() as session:
            session.execute(statement)
            session.commit()

    with kz.node.sessions() as session:
        row = session.get(AuditEntry, 3)
        original = (row.entry, row.leaf_hash, row.kind, row.at)
        other = session.get(AuditEntry, 4)
        swapped = (other.entry, other.leaf_hash, other.kind, other.at)

    def put(seq, values):
        entry, leaf_hash, kind, at = values
        return (
            update(AuditEntry)
            .where(AuditEntry.seq == seq)
            .values(entry=entry, leaf_hash=leaf_hash, kind=kind, at=at)
        )

    tamper(update(AuditEntry).where(AuditEntry.seq == 3).values(entry=original[0] + b" "))
    assert "entry 3 was changed" in verify(kz).problem
    tamper(update(AuditEntry).where(AuditEntry.seq == 3).values(entry=original[0]))

    # Reordering: entries 3 and 4 exchange places, each with matching hash and columns.
    tamper(put(3, swapped))
    tamper(put(4, original))
    assert "changed, deleted or reordered" in verify(kz).problem
    tamper(put(3, original))
    tamper(put(4, swapped))
    assert verify(kz).ok

    # The columns the oversight report selects by must match the hashed contents.
    for changed in ({"kind": "hidden"}, {"at": original[3] + 86400}):
        tamper(update(AuditEntry).where(AuditEntry.seq == 3).values(**changed))
        assert "entry 3 was changed: its kind and at columns" in verify(kz).problem
        tamper(put(3, original))
    # Contents that are no entry at all, with a matching leaf hash: named, no traceback.
    for contents in (b"not json", b"[1]", b"{}"):
        tamper(
            update(AuditEntry)
            .where(AuditEntry.seq == 3)
            .values(entry=contents, leaf_hash=merkle.leaf_hash(contents))
        )
        assert "entry 3 was changed" in verify(kz).problem
        tamper(put(3, original))
    assert verify(kz).ok

    tamper(delete(AuditEntry).where(AuditEntry.seq == 2))
    assert "entry 2 is missing" in verify(kz).problem


def test_verify_command_and_checkpoint_command(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    submit(kz, ["KG"])
    runner = CliRunner()
    env = {"GATEWAY_KEY_PASSPHRASE": PASSPHRASE}
    made = runner.invoke(main, ["--instance", str(kz.instance), "audit", "checkpoint"], env=env)
    assert made.exit_code == 0 and made.output.startswith("xb1-audit/test-federation/KZ\n")
    ok = runner.invoke(main, ["--instance", str(kz.instance), "audit", "verify"], env=env)
    assert ok.exit_code == 0 and "Audit log intact" in ok.output
    with kz.node.sessions() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq == 1))
        session.commit()
    broken = runner.invoke(main, ["--instance", str(kz.instance), "audit", "verify"], env=env)
    assert broken.exit_code == 1 and "entry 1 is missing" in broken.output


def test_a_checkpoint_signed_by_a_key_the_trust_list_does_not_list_is_said_as_such(
    make_federation,
):
    """The signature fails, not the entries: verify names both possible causes, and
    does not claim that an entry was changed."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    submit(kz, ["KG"])
    env = {"GATEWAY_KEY_PASSPHRASE": PASSPHRASE}
    made = CliRunner().invoke(
        main, ["--instance", str(kz.instance), "audit", "checkpoint"], env=env
    )
    assert made.exit_code == 0
    with kz.node.sessions() as session:  # as a node whose keys the trust list does not list
        problem = log.verify(session, kz.node.trust(), "KG").problem
    assert problem is not None
    assert "is not signed by any signing key the trust list lists for KG" in problem
    assert "gateway keys show" in problem and "changed, deleted or reordered" not in problem


def test_concurrent_appends_get_dense_positions(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    start = threading.Barrier(4)
    errors = []

    def append(worker):
        start.wait()
        for i in range(15):
            try:
                with kz.node.sessions() as session:
                    log.record(session, "test", worker=worker, i=i)
                    session.commit()
            except Exception as e:  # collected and asserted below
                errors.append(e)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    seqs = [seq for seq, _ in kinds(kz)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert sum(1 for _, e in kinds(kz) if e["kind"] == "test") == 60


def test_an_append_that_waited_for_another_takes_the_next_position(make_federation):
    """The second writer starts while the first holds the right to append (SQLite's
    writer lock, PostgreSQL's advisory lock) and must still get the next position
    once the first commits, with no gap and no duplicate."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    first = kz.node.sessions()
    log.record(first, "test", n=1)
    waiting = threading.Event()
    errors = []

    def second():
        try:
            with kz.node.sessions() as session:
                waiting.set()
                log.record(session, "test", n=2)
                session.commit()
        except Exception as e:  # collected and asserted below
            errors.append(e)

    thread = threading.Thread(target=second)
    thread.start()
    waiting.wait()
    time.sleep(0.5)  # the second append is now blocked behind the first
    first.commit()
    first.close()
    thread.join(timeout=30)
    assert errors == []
    entries = kinds(kz)
    assert [seq for seq, _ in entries] == list(range(1, len(entries) + 1))
    assert [e["n"] for _, e in entries if e["kind"] == "test"] == [1, 2]


@pytest.mark.parametrize("damage", [lambda raw: b"\x42" * len(raw), lambda raw: raw[:-32]])
def test_a_changed_stored_frontier_stops_checkpoints_and_verify_names_it(make_federation, damage):
    """The next checkpoint continues from the frontier stored beside the last one,
    which no signature covers: changed, it would make the node sign a fork of its own
    log. The node refuses to sign, and verify names the checkpoint."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    submit(kz, ["KG"])
    first = log.checkpoint(kz.node)
    with kz.node.sessions() as session:
        session.execute(
            update(AuditCheckpoint)
            .where(AuditCheckpoint.size == first.size)
            .values(frontier=damage(first.frontier))
        )
        session.commit()
    assert f"checkpoint at size {first.size}: its stored frontier" in verify(kz).problem
    submit(kz, ["KG"])
    with pytest.raises(NodeStateError) as refused:
        log.checkpoint(kz.node)
    assert refused.value.code == "audit-mismatch"
    with kz.node.sessions() as session:
        assert [row.size for row in session.scalars(select(AuditCheckpoint))] == [first.size]
