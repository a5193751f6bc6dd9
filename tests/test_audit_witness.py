"""Nodes witness each other's audit logs: consistent growth is co-signed, a rewritten
or forked log raises an alarm that stays until an operator clears it."""

from __future__ import annotations

import os
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select, update

from gateway.audit import log, note
from gateway.audit import witness as witness_module
from gateway.audit.witness import MAX_NOTE_BYTES, Witness
from gateway.cli import main
from gateway.errors import NodeStateError, PeerError
from gateway.models import AuditCheckpoint, AuditEntry, WitnessState
from tests.conftest import PASSPHRASE, sqlite_only
from tests.test_rotation import revoke_signing_key
from tests.test_trust_follow import _trickling, submit


def test_consistent_growth_is_cosigned_and_served(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    witness = Witness(kg.node)
    assert witness.witness("KZ") is None  # no checkpoint yet
    submit(kz, ["KG"])
    first = log.checkpoint(kz.node)
    state = witness.witness("KZ")
    assert (state.size, state.root, state.problem) == (first.size, first.root, None)

    submit(kz, ["KG"])
    second = log.checkpoint(kz.node)
    state = witness.witness("KZ")
    assert (state.size, state.problem) == (second.size, None)

    served = kg.client().get("/xb1/witness/KZ").data.decode()
    body = served.split("\n\n")[0] + "\n"
    cosignature = served.splitlines(keepends=True)[-1]
    stamp = note.verify_cosignature(
        body, cosignature, log.origin_of("test-federation", "KG"), kg.keys.current_signing.public
    )
    assert abs(stamp - int(time.time())) < 60
    assert kg.client().get("/readyz").status_code == 200


def test_a_rewritten_log_is_a_fork_alarm_until_cleared(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    for _ in range(2):
        submit(kz, ["KG"])
    log.checkpoint(kz.node)
    witness = Witness(kg.node)
    assert witness.witness("KZ").problem is None

    # KZ's operator rewrites history: drops everything, logs other entries, re-signs.
    with kz.node.sessions() as session:
        session.execute(delete(AuditCheckpoint))
        session.execute(delete(AuditEntry))
        session.commit()
    for i in range(12):
        with kz.node.sessions() as session:
            log.record(session, "rewritten", i=i)
            session.commit()
    log.checkpoint(kz.node)

    state = witness.witness("KZ")
    assert state.problem_code == "audit-fork" and "rewritten history" in state.problem
    ready = kg.client().get("/readyz")
    assert ready.status_code == 503
    assert "audit-fork" in [a["code"] for a in ready.get_json()["alarms"]]
    assert Witness(kg.node).witness("KZ").problem_code == "audit-fork"  # stays

    runner = CliRunner()
    cleared = runner.invoke(
        main,
        [
            "--instance",
            str(kg.instance),
            "audit",
            "reset-witness",
            "KZ",
            "--reason",
            "KZ restored from backup; confirmed",
            "--by",
            "KG auditor",
        ],
        env={"GATEWAY_KEY_PASSPHRASE": PASSPHRASE},
    )
    assert cleared.exit_code == 0, cleared.output
    assert kg.client().get("/readyz").status_code == 200
    assert Witness(kg.node).witness("KZ").problem is None


def test_a_shrunk_log_is_a_rollback_alarm(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    for _ in range(2):
        submit(kz, ["KG"])
    log.checkpoint(kz.node)
    witness = Witness(kg.node)
    witness.witness("KZ")
    with kz.node.sessions() as session:
        session.execute(delete(AuditCheckpoint))
        session.execute(delete(AuditEntry).where(AuditEntry.seq > 2))
        session.commit()
    log.checkpoint(kz.node)
    assert witness.witness("KZ").problem_code == "audit-rollback"


def test_revoked_keys_sign_no_checkpoint_and_no_cosignature(make_federation):
    """§5: once revoked, a key vouches for nothing, and a checkpoint carries no date:
    a witness refuses a checkpoint signed with a revoked key, and a node keeps no
    co-signature made with one."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    log.checkpoint(kz.node)
    assert Witness(kg.node).witness("KZ").problem is None  # KG co-signs with its key
    # KG's key is revoked (stolen); KZ no longer keeps what it co-signed.
    revoke_signing_key(fed, "KG", revoked_ago=5)
    assert Witness(kz.node).collect("KG") == 0
    # KZ's key is revoked too: KZ itself signs nothing more with it (its new key is not
    # loaded here) ...
    revoke_signing_key(fed, "KZ", revoked_ago=5)
    with pytest.raises(NodeStateError, match="none of its signing keys"):
        log.checkpoint(kz.node, min_new=1)
    # ... but a thief keeps signing KZ's checkpoints with it.
    stolen = kz.keys.current_signing
    kz.node.signing_pair = lambda now=None, *, usable=True: stolen  # type: ignore[method-assign]
    assert log.checkpoint(kz.node, min_new=1) is not None
    with pytest.raises(note.NoteError, match="not signed by any of its keys"):
        Witness(kg.node).witness("KZ")


def test_the_witness_command_goes_on_past_an_unreachable_member(make_federation):
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg, uz = fed["KZ"], fed["KG"], fed["UZ"]
    submit(uz, ["KZ"])
    log.checkpoint(uz.node)
    kg.server.stop()  # KG comes first and does not answer

    def gateway(*args):
        return CliRunner().invoke(
            main,
            ["--instance", str(kz.instance), "audit", *args],
            env={"GATEWAY_KEY_PASSPHRASE": PASSPHRASE},
        )

    result = gateway("witness")
    assert result.exit_code == 2, result.output
    assert "KG: error [peer-unreachable]" in result.stderr
    assert "UZ: " in result.stdout and "consistent, co-signed" in result.stdout
    assert "error [witness-incomplete]: could not witness KG" in result.stderr
    # A healthy witness state is no alarm to clear: it is kept.
    kept = gateway("reset-witness", "UZ", "--reason", "routine check", "--by", "KZ auditor")
    assert kept.exit_code == 2 and "error [no-alarm]" in kept.stderr
    assert Witness(kz.node).witness("UZ").problem is None


@sqlite_only
def test_a_peer_trickling_or_inflating_its_checkpoint_is_cut_off(make_federation):
    """Witnessing runs between deliveries: a checkpoint served a byte at a time ends
    after two peer timeouts, and one larger than a note can be is refused unread."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    _trickling(kz, "/xb1/checkpoint")
    began = time.monotonic()
    with pytest.raises(PeerError) as slow:
        Witness(kg.node).witness("KZ")
    limit = 2 * kg.node.settings.peer_timeout
    assert limit <= time.monotonic() - began < limit + 3
    assert (slow.value.code, f"within {limit:g} s" in slow.value.message) == ("peer-error", True)

    def inflated(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"x" * (MAX_NOTE_BYTES + 1)]

    kz.server.switch.app = inflated
    with pytest.raises(PeerError) as large:
        Witness(kg.node).witness("KZ")
    assert "more than" in large.value.message


def test_two_witnesses_of_one_peer_at_once_never_set_its_state_back(make_federation):
    """While one witness of KZ fetches a consistency proof, another (a second
    dispatcher, `gateway audit witness`) witnesses a newer checkpoint. The first must
    not write its older state over the newer one: a fork after the older point would
    then pass unseen although the newer checkpoint was co-signed."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    log.checkpoint(kz.node)
    Witness(kg.node).witness("KZ")
    submit(kz, ["KG"])
    log.checkpoint(kz.node)
    slow = Witness(kg.node)
    fetch, newer = slow._get, []

    def meanwhile(url: str) -> bytes:
        if "/proofs/consistency" in url and not newer:
            submit(kz, ["KG"])
            newer.append(log.checkpoint(kz.node))
            assert Witness(kg.node).witness("KZ").size == newer[0].size
        return fetch(url)

    slow._get = meanwhile  # type: ignore[method-assign]
    state = slow.witness("KZ")
    assert (state.size, state.root, state.problem) == (newer[0].size, newer[0].root, None)


@pytest.mark.parametrize(("status", "alarm"), [(422, "audit-fork"), (503, None), (429, None)])
def test_a_consistency_proof_refused_is_a_fork_alarm_unless_the_peer_is_busy(
    make_federation, status, alarm
):
    """A peer whose signed checkpoint grew but that refuses to prove it extends the one
    it signed before (what a forked log has to do) raises the alarm; one that is down
    or rate-limited for a moment is asked again at the next round."""
    kz, kg, witness, first, _ = _grown(make_federation)
    restore = _proofs_answer(kz, status)
    if alarm is None:
        with pytest.raises(PeerError):
            witness.witness("KZ")
        state = Witness(kg.node).witness  # unchanged, no alarm
        restore()
        later = state("KZ")
        assert later.problem is None and later.size > first.size
    else:
        state = witness.witness("KZ")
        assert state.problem_code == alarm and f"refused (HTTP {status})" in state.problem
        assert state.size == first.size  # what was co-signed stays the reference


def _proofs_answer(kz, status):
    """Make KZ answer every consistency-proof request with ``status``; returns a
    function that puts its app back."""
    return _serving(kz, None, status)


def _grown(make_federation):
    """KZ and KG; KG witnessed KZ's first checkpoint, and KZ has signed a larger one
    since: (kz, kg, KG's witness, the state witnessed, the larger checkpoint)."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    log.checkpoint(kz.node)
    witness = Witness(kg.node)
    first = witness.witness("KZ")
    submit(kz, ["KG"])
    return kz, kg, witness, first, log.checkpoint(kz.node)


def _set_unproven_since(kg, peer, at):
    with kg.node.sessions() as session:
        session.execute(
            update(WitnessState).where(WitnessState.peer == peer).values(unproven_since=at)
        )
        session.commit()


def _alarm_codes(kg):
    ready = kg.client().get("/readyz")
    return ready.status_code, [a["code"] for a in ready.get_json()["alarms"]]


def test_a_larger_log_left_unproven_for_a_day_is_an_alarm_until_proven(make_federation):
    """A peer that signed a larger log and never answers the proof request (what a
    forked log could do forever, answering 503) raises ``audit-unproven`` once that
    has lasted a day; the alarm ends by itself when a proof holds."""
    kz, kg, witness, first, larger = _grown(make_federation)
    restore = _proofs_answer(kz, 503)
    before = int(time.time())
    with pytest.raises(PeerError):
        witness.witness("KZ")
    with kg.node.sessions() as session:
        state = session.get(WitnessState, "KZ")
    assert (state.size, state.problem) == (first.size, None)  # the reference stays
    assert state.unproven_size == larger.size and state.unproven_since >= before
    assert state.unproven_note.startswith(log.origin_of("test-federation", "KZ"))
    assert _alarm_codes(kg) == (200, [])  # a moment's outage is no alarm

    # Failing again later keeps the first time it failed.
    with pytest.raises(PeerError):
        witness.witness("KZ")
    with kg.node.sessions() as session:
        assert session.get(WitnessState, "KZ").unproven_since == state.unproven_since

    _set_unproven_since(kg, "KZ", int(time.time()) - witness_module.UNPROVEN_DAY - 60)
    status, codes = _alarm_codes(kg)
    assert (status, codes) == (503, ["audit-unproven"])
    message = kg.client().get("/readyz").get_json()["alarms"][0]["message"]
    assert f"signed a log of {larger.size} entries" in message
    assert f"extends the {first.size} entries" in message

    restore()
    state = witness.witness("KZ")
    assert (state.size, state.problem, state.unproven_since) == (larger.size, None, None)
    assert (state.unproven_size, state.unproven_note) == (None, None)
    assert _alarm_codes(kg) == (200, [])


def test_the_unproven_alarm_waits_for_three_witness_rounds(make_federation):
    """With a checkpoint interval of a day, a day unproven is only one round."""
    assert witness_module.unproven_alarm_after(60) == witness_module.UNPROVEN_DAY
    assert witness_module.unproven_alarm_after(86_400) == 3 * 86_400


def test_a_smaller_log_after_an_unproven_larger_one_is_a_rollback(make_federation):
    """A peer signed a log of n entries, gave no proof, then serves a smaller signed log
    (what it would do to hide what it signed): no honest log shrinks."""
    kz, kg, witness, first, _ = _grown(make_federation)
    older_note = first.cosigned.encode()  # the smaller log, as KZ signed it
    restore = _proofs_answer(kz, 503)
    with pytest.raises(PeerError):
        witness.witness("KZ")
    restore()
    inner = kz.server.switch.app

    def older(environ, start_response):
        if environ.get("PATH_INFO") == "/xb1/checkpoint":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [older_note]
        return inner(environ, start_response)

    kz.server.switch.app = older
    state = witness.witness("KZ")
    assert state.problem_code == "audit-rollback" and "(kept, unproven)" in state.problem
    assert state.size == first.size


def test_an_unproven_peer_is_named_by_the_command_and_can_be_reset(make_federation):
    kz, kg, _, _, larger = _grown(make_federation)
    _proofs_answer(kz, 502)

    def gateway(*args):
        return CliRunner().invoke(
            main,
            ["--instance", str(kg.instance), "audit", *args],
            env={"GATEWAY_KEY_PASSPHRASE": PASSPHRASE},
        )

    result = gateway("witness", "--peer", "KZ")
    assert result.exit_code != 0
    assert f"KZ: signed a log of {larger.size} entries, unproven since" in result.stderr
    assert "an audit-unproven alarm from" in result.stderr
    reset = gateway("reset-witness", "KZ", "--reason", "KZ rebuilt its node", "--by", "auditor")
    assert reset.exit_code == 0, reset.output
    with kg.node.sessions() as session:
        assert session.get(WitnessState, "KZ") is None
        entry = session.scalars(select(AuditEntry).where(AuditEntry.kind == "witness-reset")).one()
    assert b"has not proven that it extends" in entry.entry


def test_a_node_does_not_witness_itself(make_federation):
    """`gateway audit witness --peer KZ` on KZ co-signed its own checkpoint, which then
    read as a witness in what it served."""
    kz = make_federation(("KZ", "KG"))["KZ"]
    submit(kz, ["KG"])
    log.checkpoint(kz.node)
    for call in (Witness(kz.node).witness, Witness(kz.node).collect):
        with pytest.raises(PeerError) as refusal:
            call("KZ")
        assert refusal.value.code == "own-node"
    result = CliRunner().invoke(
        main,
        ["--instance", str(kz.instance), "audit", "witness", "--peer", "KZ"],
        env={"GATEWAY_KEY_PASSPHRASE": PASSPHRASE},
    )
    assert result.exit_code == 2 and "error [own-node]" in result.stderr
    served = kz.client().get("/xb1/checkpoint").data.decode()
    assert served.count(log.origin_of("test-federation", "KZ")) == 2  # origin, its signature


def _forked_note(kz, size):
    """A checkpoint of ``size`` entries that KZ signs with its key over another log."""
    origin = log.origin_of("test-federation", "KZ")
    return note.sign_note(
        note.checkpoint_body(origin, size, os.urandom(32)), origin, kz.node.signing_pair()
    ).encode()


def _serving(kz, checkpoint_text, proofs_status):
    """Make KZ serve ``checkpoint_text`` (None: its own) and answer proof requests with
    ``proofs_status`` (None: as its log says); returns what puts its app back."""
    inner = kz.server.switch.app

    def shown(environ, start_response):
        path = environ.get("PATH_INFO")
        if path == "/xb1/checkpoint" and checkpoint_text is not None:
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [checkpoint_text]
        if path == "/xb1/proofs/consistency" and proofs_status is not None:
            start_response(f"{proofs_status} No", [("Content-Type", "application/json")])
            return [b'{"error": "unavailable", "message": "later"}']
        return inner(environ, start_response)

    kz.server.switch.app = shown

    def restore():
        kz.server.switch.app = inner

    return restore


def test_a_log_shown_unproven_and_another_of_its_size_proven_later_is_a_fork(make_federation):
    """KZ shows KG a forked log of n entries and fails the proof request; later it
    serves its real log of n entries, which proves consistent with what KG co-signed.
    The two signed logs of one size are a fork, and the kept note stays as evidence."""
    kz, kg, witness, first, larger = _grown(make_federation)
    forged = _forked_note(kz, larger.size)
    restore = _serving(kz, forged, 503)
    with pytest.raises(PeerError):
        witness.witness("KZ")
    restore()
    state = witness.witness("KZ")
    assert state.problem_code == "audit-fork" and "(one kept, unproven)" in state.problem
    assert state.size == first.size and state.unproven_note == forged.decode()


def test_a_later_log_must_extend_the_one_kept_unproven(make_federation):
    """A forked log of n entries shown without proof, then a real log of more entries
    that extends what KG co-signed: it must also extend the kept one, and does not."""
    kz, kg, witness, first, larger = _grown(make_federation)
    forged = _forked_note(kz, larger.size)
    restore = _serving(kz, forged, 503)
    with pytest.raises(PeerError):
        witness.witness("KZ")
    # A later, larger note while proofs still fail does not replace the kept one.
    submit(kz, ["KG"])
    later = log.checkpoint(kz.node)
    restore()
    restore = _proofs_answer(kz, 503)
    with pytest.raises(PeerError):
        witness.witness("KZ")
    with kg.node.sessions() as session:
        kept = session.get(WitnessState, "KZ")
    assert (kept.unproven_size, kept.unproven_note) == (later.size, forged.decode())
    restore()
    state = witness.witness("KZ")
    assert state.problem_code == "audit-fork" and "does not extend" in state.problem
    assert state.size == first.size


def test_a_fork_of_the_largest_unproven_size_is_seen_too(make_federation):
    """The first unproven checkpoint is real, a later larger one forged: the real log
    of that larger size, proven later, is the second log of its size."""
    kz, kg, witness, first, larger = _grown(make_federation)
    restore = _proofs_answer(kz, 503)
    with pytest.raises(PeerError):
        witness.witness("KZ")  # kept: KZ's real checkpoint of larger.size entries
    restore()
    submit(kz, ["KG"])
    real = log.checkpoint(kz.node)
    restore = _serving(kz, _forked_note(kz, real.size), 503)
    with pytest.raises(PeerError):
        witness.witness("KZ")
    restore()
    state = witness.witness("KZ")
    assert state.problem_code == "audit-fork" and "(one kept, unproven)" in state.problem


def _witness_failing_proofs(kg, checkpoint_text):
    """Another witness of KZ on KG (a second dispatcher): its proof requests fail, and
    with ``checkpoint_text`` it is shown that checkpoint."""
    other = Witness(kg.node)
    fetch = other._get

    def get(url):
        if url.endswith("/xb1/checkpoint") and checkpoint_text is not None:
            return checkpoint_text
        if "/proofs/consistency" in url:
            raise PeerError("peer-error", f"{url} answered HTTP 503", details={"status": 503})
        return fetch(url)

    other._get = get
    return other


def _meanwhile(witness, action):
    """Run ``action`` when ``witness`` first asks for a proof (it has read the state)."""
    fetch, done = witness._get, []

    def get(url):
        if "/proofs/consistency" in url and not done:
            done.append(True)
            action()
        return fetch(url)

    witness._get = get


def test_a_fork_shown_to_one_of_two_witnesses_at_once_is_seen(make_federation):
    """KZ shows one witness a forged log of n entries and the other its real one, and
    fails both proofs: the second to keep its checkpoint finds the first one's."""
    kz, kg, witness, first, larger = _grown(make_federation)
    forged = _forked_note(kz, larger.size)

    def other_witness():
        with pytest.raises(PeerError):
            _witness_failing_proofs(kg, forged).witness("KZ")  # keeps the forged one

    _meanwhile(witness, other_witness)
    restore = _proofs_answer(kz, 503)
    state = witness.witness("KZ")  # shown the real one, its proof fails as well
    restore()
    assert state.problem_code == "audit-fork" and "(one kept, unproven)" in state.problem
    assert state.size == first.size


def test_a_proof_that_held_while_another_witness_failed_leaves_no_unproven_state(
    make_federation,
):
    """One witness proves and co-signs KZ's checkpoint while another, failing its proof,
    notes it unproven: the first stores only over the state it compared, so KZ (honest
    and idle from then on) is not reported unproven a day later."""
    kz, kg, witness, first, larger = _grown(make_federation)

    def other_witness():
        with pytest.raises(PeerError):
            _witness_failing_proofs(kg, None).witness("KZ")

    _meanwhile(witness, other_witness)
    state = witness.witness("KZ")
    assert (state.size, state.problem, state.unproven_since) == (larger.size, None, None)
    assert state.unproven_note is None and state.unproven_last_note is None
    assert _alarm_codes(kg) == (200, [])
