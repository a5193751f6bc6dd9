"""The administrators' offline workflow (``keys.proposal``, ``gateway admin``): five states
bootstrap a federation with threshold 3 of 5, add a sixth, rotate and revoke keys and
change the admin set, each version signed on separate machines, merged, checked with the
nodes' own verifier and installed on a node.

Admin keys sealed by the tests use libsodium's minimum argon2 limits; only the one key made
by ``gateway admin keygen`` pays the production cost (about a second to seal and to open).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any
from unittest import mock

import click
import pytest
from click.testing import CliRunner, Result

from gateway import cli_admin
from gateway.cli import GatewayGroup, main
from gateway.cli_admin import admin
from gateway.config import load_settings, write_instance_file
from gateway.node import Node
from keys.fingerprint import fingerprint
from keys.keypair import SigningKeyPair
from keys.nodekeys import NodeKeys
from keys.proposal import (
    AddAdmin,
    AddKey,
    AddNode,
    AdminKey,
    Proposal,
    ProposalError,
    RemoveAdmin,
    RemoveKey,
    RemoveNode,
    RetireKey,
    RevokeKey,
    SetEndpoint,
    SetName,
    SetThreshold,
    bootstrap,
    diff,
    merge,
    propose,
    read_current,
    sign,
    status,
)
from keys.sealed import MEMLIMIT_MIN, OPSLIMIT_MIN, KeyFileError, write_key_file
from keys.trustlist import (
    MAX_SIGNATURES,
    TrustError,
    TrustList,
    assemble,
    build_list,
    key_entry,
    node_entry,
    sign_list,
)
from schemas import xb1json
from schemas.b64 import b64d, b64e

STATES = {
    "KZ": "Kazakhstan",
    "KG": "Kyrgyzstan",
    "TJ": "Tajikistan",
    "TM": "Turkmenistan",
    "UZ": "Uzbekistan",
}
NAMES = {**STATES, "TR": "Türkiye"}
DAY = 86400
T0 = 1_800_000_000  # fixed times: every library test passes ``now`` explicitly
YEAR = 365 * DAY
PASSPHRASE = "five states, one federation, no central authority"


def ring(node: str) -> NodeKeys:
    return NodeKeys.deterministic(node, b"admin-workflow", created=T0 - DAY)


def entry(node: str, name: str | None = None) -> dict[str, Any]:
    keys = ring(node)
    return node_entry(
        node,
        name or NAMES[node],
        f"https://xb1.{node.lower()}.example",
        keys.current_signing,
        keys.current_encryption,
        not_before=T0 - DAY,
        not_after=T0 + 2 * YEAR,
    )


def admin_key(name: str) -> AdminKey:
    seed = hashlib.sha256(f"admin-workflow {name}".encode()).digest()
    return AdminKey(f"admin of {name}", SigningKeyPair(seed))


ADMINS = {node: admin_key(node) for node in STATES}
NEW_ADMINS = [admin_key("newcomer 1"), admin_key("newcomer 2")]


def L(wire: bytes) -> bytes:  # PROTOCOL §5 calls the list bytes L
    return Proposal.from_wire(wire).raw


def signed(wire: bytes, *signers: str | AdminKey, current: TrustList | None = None) -> bytes:
    for signer in signers:
        wire = sign(wire, ADMINS[signer] if isinstance(signer, str) else signer, current)
    return wire


def version_1_wire(issued_at: int = T0) -> bytes:
    """The unsigned bootstrap proposal of the five states, threshold 3 of 5."""
    return bootstrap(
        "central-asia",
        [ADMINS[n].entry() for n in STATES],
        3,
        [entry(n) for n in STATES],
        issued_at=issued_at,
        expires=issued_at + YEAR,
    )


def version_1() -> TrustList:
    wire = signed(version_1_wire(), "KZ", "KG", "TJ")
    return TrustList.from_anchor(wire, hashlib.sha256(L(wire)).digest(), T0)


def code_of(excinfo: pytest.ExceptionInfo[Any]) -> str:
    return excinfo.value.code


# ---------------------------------------------------------------------------- library


def test_five_states_bootstrap_with_threshold_3_of_5() -> None:
    wire = version_1_wire()
    report = status(wire, now=T0)
    assert (len(report.new.signed), report.new.threshold, report.ready) == (0, 3, False)
    assert report.verdict is not None and report.verdict.code == "trust-threshold"

    two = signed(wire, "KZ", "KG")
    report = status(two, now=T0)
    assert [a.label for a in report.new.signed] == ["admin of KZ", "admin of KG"]
    assert {a.label for a in report.new.missing} == {"admin of TJ", "admin of TM", "admin of UZ"}
    assert not report.ready and "2 valid signatures, 3 needed: 1 more" in "\n".join(report.lines())
    anchor = hashlib.sha256(L(wire)).digest()
    with pytest.raises(TrustError) as refused:
        TrustList.from_anchor(two, anchor, T0)
    assert code_of(refused) == "trust-threshold"

    three = sign(two, ADMINS["UZ"])
    report = status(three, now=T0)
    assert report.ready and report.lines()[-1] == "ready: nodes will install this version"
    trust_list = TrustList.from_anchor(three, anchor, T0)
    assert trust_list.node_ids == tuple(STATES)
    assert (trust_list.version, trust_list.threshold, len(trust_list.admins)) == (1, 3, 5)
    # The signed proposal is the trust list file itself.
    assert trust_list.to_wire() == three


def test_bootstrap_refuses_inconsistent_input() -> None:
    admins = [ADMINS[n].entry() for n in STATES]
    nodes = [entry(n) for n in STATES]

    def refused(**changes: Any) -> str:
        arguments: dict[str, Any] = {
            "federation": "central-asia",
            "admins": admins,
            "threshold": 3,
            "nodes": nodes,
            "issued_at": T0,
            "expires": T0 + YEAR,
        }
        with pytest.raises(ProposalError) as excinfo:
            bootstrap(**{**arguments, **changes})
        return code_of(excinfo)

    assert refused(threshold=6) == "proposal-threshold"
    assert refused(threshold=0) == "proposal-threshold"
    assert refused(admins=[]) == "proposal-threshold"
    assert refused(expires=T0) == "proposal-expires"
    assert refused(admins=[*admins, admins[0]]) == "proposal-duplicate-admin"
    assert refused(nodes=[*nodes, entry("KZ")]) == "proposal-duplicate-node"
    # Another node claiming KZ's keys.
    stolen = {**entry("KZ"), "node": "KG-2"}
    assert refused(nodes=[*nodes, stolen]) == "proposal-duplicate-key"
    # A name that could forge a line of the diff, a kid that is not its key's, junk.
    assert refused(nodes=[entry("KZ", "Kazakhstan\n+ node XX")]) == "proposal-bad-entry"
    forged = {**admins[0], "kid": admins[1]["kid"]}
    assert refused(admins=[forged]) == "proposal-bad-entry"
    assert refused(nodes=[{"node": "KZ"}]) == "proposal-bad-entry"
    assert refused(federation="") == "proposal-bad-entry"
    for endpoint in ("ftp://xb1.kz.example", "https://xb1.kz.example/\u2028", "https://"):
        bad_endpoint = {**entry("KZ"), "endpoint": endpoint}
        assert refused(nodes=[bad_endpoint]) == "proposal-bad-entry"


def test_sixth_state_signed_on_separate_machines_and_merged() -> None:
    v1 = version_1()
    proposal = propose(
        v1, changes=[AddNode(entry("TR", "Türkiye"))], issued_at=T0 + DAY, expires=T0 + 2 * YEAR
    )
    # Three administrators each sign their own copy, on their own machine.
    copies = [sign(proposal, ADMINS[n], v1) for n in ("KZ", "TM", "UZ")]
    for copy in copies:
        with pytest.raises(TrustError) as refused:
            v1.verify_successor(copy, T0 + DAY)
        assert code_of(refused) == "trust-threshold"
    merged = merge(*copies, copies[0])
    assert len(Proposal.from_wire(merged).signatures) == 3
    assert merge(merged, *copies) == merged
    report = status(merged, v1, now=T0 + DAY)
    assert report.ready and report.old is not None and len(report.old.signed) == 3
    v2 = v1.verify_successor(merged, T0 + DAY)
    assert v2.node_ids == (*STATES, "TR")
    assert v2.node("TR").name == "Türkiye"  # type: ignore[union-attr]

    # A copy of another proposal cannot be merged in.
    other = propose(v1, changes=[AddNode(entry("TR", "Turkey"))], issued_at=T0 + DAY)
    with pytest.raises(ProposalError) as mismatch:
        merge(copies[0], sign(other, ADMINS["KG"], v1), names=["kz.json", "kg.json"])
    assert code_of(mismatch) == "proposal-mismatch"
    assert "kg.json holds another list" in mismatch.value.message


def test_key_rotation_with_overlap_then_revocation() -> None:
    v1 = version_1()
    old_sig = ring("KZ").current_signing
    new_sig = SigningKeyPair(hashlib.sha256(b"KZ second signing key").digest())
    at = T0 + 10 * DAY
    new_key = key_entry(new_sig.public, "sig", not_before=at, not_after=at + 2 * YEAR)

    # Retiring the only active signing key first is refused: add its successor.
    with pytest.raises(ProposalError) as last:
        propose(v1, changes=[RetireKey(old_sig.kid)], issued_at=at)
    assert code_of(last) == "proposal-last-key"

    rotation = propose(v1, changes=[AddKey("KZ", new_key), RetireKey(old_sig.kid)], issued_at=at)
    lines = diff(v1, L(rotation))
    assert (
        f"+ KZ key {new_sig.kid} sig active, from 2027-01-25 08:00:00 UTC until "
        f"2029-01-24 08:00:00 UTC (fingerprint {fingerprint(new_sig.public)})" in lines
    )
    overlap_end = "2027-02-08 08:00:00 UTC"  # 14 days after the proposal by default
    assert (
        f"~ KZ key {old_sig.kid} sig: active → retired; not_after 2029-01-14 08:00:00 UTC → "
        f"{overlap_end}" in lines
    )
    v2 = v1.verify_successor(signed(rotation, "KZ", "KG", "TJ", current=v1), at)
    keys = v2.keys
    # The retired key still vouches for messages dated within the overlap, not after it.
    assert keys.signing_key("KZ", old_sig.kid, at + DAY, at + DAY) == old_sig.public
    with pytest.raises(TrustError):
        keys.signing_key("KZ", old_sig.kid, at + 15 * DAY, at + 15 * DAY)
    assert keys.signing_key("KZ", new_sig.kid, at + 15 * DAY, at + 15 * DAY) == new_sig.public

    # KG's signing key is stolen: revoke it (even though it is KG's only one).
    kg_sig = ring("KG").current_signing
    stolen_at = at + 20 * DAY
    revocation = propose(v2, changes=[RevokeKey(kg_sig.kid)], issued_at=stolen_at)
    lines = diff(v2, L(revocation))
    assert f"~ KG key {kg_sig.kid} sig: active → revoked at 2027-02-14 08:00:00 UTC" in lines
    assert "! KG has no active sig key: it cannot sign until a new key is listed" in lines
    v3 = v2.verify_successor(signed(revocation, "KG", "TM", "UZ", current=v2), stolen_at)
    with pytest.raises(TrustError) as revoked:
        v3.keys.signing_key("KG", kg_sig.kid, stolen_at - DAY, stolen_at)
    assert code_of(revoked) == "key-not-valid"

    # Revoking again is refused unless it moves the revocation earlier.
    with pytest.raises(ProposalError) as again:
        propose(v3, changes=[RevokeKey(kg_sig.kid)], issued_at=stolen_at + DAY)
    assert code_of(again) == "proposal-key-status"
    earlier = propose(
        v3, changes=[RevokeKey(kg_sig.kid, revoked_at=stolen_at - 5 * DAY)], issued_at=stolen_at
    )
    assert diff(v3, L(earlier))[0] == (
        f"~ KG key {kg_sig.kid} sig: revoked at 2027-02-14 08:00:00 UTC → 2027-02-09 08:00:00 UTC"
    )
    assert not any(line.startswith("! KG key") for line in diff(v3, L(earlier)))

    # A hand-made version that lifts the revocation, or moves it later: nodes would take
    # it (t signatures), but every signer is warned.
    def hand_made(**changed: object) -> bytes:
        doc = json.loads(L(earlier))
        [kg] = [n for n in doc["nodes"] if n["node"] == "KG"]
        [key] = [k for k in kg["keys"] if k["kid"] == kg_sig.kid]
        key.update(changed)
        if key["status"] != "revoked":
            del key["revoked_at"]
        return L(assemble(xb1json.dumps(doc), []))

    lifted = diff(v3, hand_made(status="active"), now=stolen_at)
    assert f"! KG key {kg_sig.kid}: its revocation is lifted (active again): it vouches " in (
        " ".join(lifted)
    )
    later = diff(v3, hand_made(revoked_at=stolen_at + 30 * DAY), now=stolen_at)
    assert (
        f"! KG key {kg_sig.kid}: its revocation moves later, from 2027-02-14 08:00:00 UTC to "
        "2027-03-16 08:00:00 UTC: what was signed with it before that counts again"
    ) in later

    # Another tool's version revokes it without a time (optional in §5): shown as such,
    # and it cannot be given a time (that would make it usable for older messages).
    doc = json.loads(L(earlier))
    [kg] = [n for n in doc["nodes"] if n["node"] == "KG"]
    [key] = [k for k in kg["keys"] if k["kid"] == kg_sig.kid]
    del key["revoked_at"]
    timeless = assemble(xb1json.dumps(doc), [])
    assert diff(v3, L(timeless))[0] == (
        f"~ KG key {kg_sig.kid} sig: revoked at 2027-02-14 08:00:00 UTC → without a time "
        "(refused for everything)"
    )
    v4 = v3.verify_successor(signed(timeless, "KG", "TM", "UZ", current=v3), stolen_at)
    # Given a time again by another tool: the key counts before it again; warned.
    timed = json.loads(L(timeless))
    [kg] = [n for n in timed["nodes"] if n["node"] == "KG"]
    [key] = [k for k in kg["keys"] if k["kid"] == kg_sig.kid]
    key["revoked_at"] = stolen_at + DAY
    warned = diff(
        v4,
        L(assemble(xb1json.dumps({**timed, "version": 5, "prev": b64e(v4.sha256)}), [])),
        now=stolen_at,
    )
    assert (
        f"! KG key {kg_sig.kid}: its revocation moves later, from without a time to "
        "2027-02-15 08:00:00 UTC: what was signed with it before that counts again"
    ) in warned
    with pytest.raises(ProposalError) as untimed:
        propose(v4, changes=[RevokeKey(kg_sig.kid, revoked_at=T0)], issued_at=stolen_at + DAY)
    assert code_of(untimed) == "proposal-key-status"
    assert "without a time" in str(untimed.value)


def test_admin_set_change_needs_both_thresholds() -> None:
    v1 = version_1()
    at = T0 + DAY
    proposal = propose(
        v1,
        changes=[
            AddAdmin(NEW_ADMINS[0].entry()),
            AddAdmin(NEW_ADMINS[1].entry()),
            RemoveAdmin(ADMINS["KZ"].kid),
            RemoveAdmin(ADMINS["TJ"].kid),
        ],
        issued_at=at,
    )
    lines = diff(v1, L(proposal))
    for newcomer in NEW_ADMINS:
        assert (
            f"+ admin {newcomer.kid} (fingerprint {fingerprint(newcomer.public)}) "
            f"{newcomer.label!r}" in lines
        )
    assert f"- admin {ADMINS['KZ'].kid} 'admin of KZ'" in lines

    # Only the new set signs: 3 of the new admins, but 1 of the old ones.
    new_only = signed(proposal, *NEW_ADMINS, "UZ", current=v1)
    with pytest.raises(TrustError) as refused:
        v1.verify_successor(new_only, at)
    assert code_of(refused) == "trust-threshold"
    assert "current version 1" in refused.value.message
    report = status(new_only, v1, now=at)
    assert report.new.complete and report.old is not None and not report.old.complete
    assert "admins of version 1: 1 valid signature, 3 needed: 2 more" in "\n".join(report.lines())

    # The outgoing admins may still sign (they are admins of version 1): both thresholds.
    both = signed(new_only, "KZ", "TJ", current=v1)
    v2 = v1.verify_successor(both, at)
    assert {a.kid for a in v2.admins} == {
        ADMINS["KG"].kid,
        ADMINS["TM"].kid,
        ADMINS["UZ"].kid,
        *(a.kid for a in NEW_ADMINS),
    }

    # In version 3 a signature by the removed KZ admin counts for nothing.
    v3_proposal = propose(v2, changes=[SetEndpoint("KG", "https://new.kg.example")], issued_at=at)
    with pytest.raises(ProposalError) as not_admin:
        sign(v3_proposal, ADMINS["KZ"], v2)
    assert code_of(not_admin) == "proposal-not-admin"
    raw = L(v3_proposal)
    with_removed = assemble(
        raw, [sign_list(raw, k.pair) for k in (ADMINS["KZ"], ADMINS["KG"], NEW_ADMINS[0])]
    )
    report = status(with_removed, v2, now=at)
    assert len(report.new.signed) == 2 and ADMINS["KZ"].kid in report.ignored
    with pytest.raises(TrustError):
        v2.verify_successor(with_removed, at)
    assert v2.verify_successor(sign(with_removed, ADMINS["TM"], v2), at).version == 3


def test_two_signatures_by_one_admin_count_once() -> None:
    wire = version_1_wire()
    raw = L(wire)
    kz = sign_list(raw, ADMINS["KZ"].pair)
    doubled = assemble(raw, [kz, kz, sign_list(raw, ADMINS["KG"].pair)])
    report = status(doubled, now=T0)
    assert len(report.new.signed) == 2 and not report.ready
    with pytest.raises(TrustError):
        TrustList.from_anchor(doubled, hashlib.sha256(raw).digest(), T0)
    # Signing twice is idempotent; merging copies keeps one signature per admin.
    once = sign(wire, ADMINS["KZ"])
    assert sign(once, ADMINS["KZ"]) == once
    assert merge(once, once, sign(wire, ADMINS["KZ"])) == once


def test_a_proposal_full_of_signatures_is_not_signed_into_one_nothing_reads() -> None:
    """A proposal padded with as many signatures as a list may hold: adding one more
    would make a file every reader refuses; refused before anything is written."""
    wire = version_1_wire()
    junk = [{"kid": f"{i:032x}", "sig": b64e(bytes(64))} for i in range(MAX_SIGNATURES)]
    padded = assemble(L(wire), junk)
    with pytest.raises(ProposalError) as refused:
        sign(padded, ADMINS["KZ"])
    assert code_of(refused) == "proposal-too-many-signatures"
    # One short of it: signed, and still readable.
    signed_once = sign(assemble(L(wire), junk[1:]), ADMINS["KZ"])
    assert len(Proposal.from_wire(signed_once).signatures) == MAX_SIGNATURES


def test_tampering_with_the_list_after_signing_invalidates_every_signature() -> None:
    wire = signed(version_1_wire(), "KZ", "KG", "TJ", "TM", "UZ")
    proposal = Proposal.from_wire(wire)
    tampered_raw = proposal.raw.replace(b"https://xb1.kz.example", b"https://xb1.kz.exampl3")
    assert tampered_raw != proposal.raw and len(tampered_raw) == len(proposal.raw)
    tampered = assemble(tampered_raw, proposal.signatures)
    report = status(tampered, now=T0)
    assert report.new.signed == () and len(report.ignored) == 5
    assert report.verdict is not None and report.verdict.code == "trust-threshold"
    with pytest.raises(TrustError) as refused:
        TrustList.from_anchor(tampered, hashlib.sha256(tampered_raw).digest(), T0)
    assert code_of(refused) == "trust-threshold"


def test_diff_names_every_change_with_fingerprints() -> None:
    v1 = version_1()
    tj_enc = ring("TJ").current_encryption
    new_enc = key_entry(NEW_ADMINS[0].public, "enc", not_before=T0, not_after=T0 + YEAR)
    changes = [
        AddAdmin(NEW_ADMINS[0].entry()),
        RemoveAdmin(ADMINS["TM"].kid),
        AddNode(entry("TR", "Türkiye")),
        AddKey("TJ", new_enc),
        RetireKey(tj_enc.kid, not_after=T0 + 3 * DAY),
        SetEndpoint("KG", "https://gw.kg.example/xb1"),
        SetName("UZ", "Uzbekistan MVD"),
        RemoveNode("TM"),
        SetThreshold(4),
    ]
    proposal = propose(v1, changes=changes, issued_at=T0 + DAY, expires=T0 + 2 * YEAR)
    lines = diff(v1, L(proposal))
    tr = ring("TR")
    newcomer = NEW_ADMINS[0]
    expected = [
        "~ expires 2028-01-15 08:00:00 UTC → 2029-01-14 08:00:00 UTC",
        "~ threshold 3 → 4",
        f"- admin {ADMINS['TM'].kid} 'admin of TM'",
        f"+ admin {newcomer.kid} (fingerprint {fingerprint(newcomer.public)}) "
        "'admin of newcomer 1'",
        "~ KG endpoint https://xb1.kg.example → https://gw.kg.example/xb1",
        f"~ TJ key {tj_enc.kid} enc: active → retired; not_after 2029-01-14 08:00:00 UTC → "
        "2027-01-18 08:00:00 UTC",
        f"+ TJ key {newcomer.kid} enc active, from 2027-01-15 08:00:00 UTC until "
        f"2028-01-15 08:00:00 UTC (fingerprint {fingerprint(newcomer.public)})",
        "- node TM https://xb1.tm.example 'Turkmenistan'",
        "~ UZ name 'Uzbekistan' → 'Uzbekistan MVD'",
        "+ node TR https://xb1.tr.example 'Türkiye'",
        f"+ TR key {tr.current_signing.kid} sig active, from 2027-01-14 08:00:00 UTC until "
        f"2029-01-14 08:00:00 UTC (fingerprint {fingerprint(tr.current_signing.public)})",
        f"+ TR key {tr.current_encryption.kid} enc active, from 2027-01-14 08:00:00 UTC until "
        f"2029-01-14 08:00:00 UTC (fingerprint {fingerprint(tr.current_encryption.public)})",
    ]
    for line in expected:
        assert line in lines, (line, lines)
    assert diff(v1, L(propose(v1, issued_at=T0 + DAY)), now=T0 + DAY) == [
        "= no change to admins, threshold, expiry or nodes"
    ]

    # The diff covers what ``propose`` cannot do too: a hand-made list relabels an admin
    # and sneaks a control character into a name; it is shown escaped on one line.
    def version_2_of(doc: dict[str, Any]) -> bytes:
        return build_list(
            federation=doc["federation"],
            version=2,
            issued_at=doc["issued_at"],
            expires=doc["expires"],
            prev=v1.sha256,
            threshold=doc["threshold"],
            admins=doc["admins"],
            nodes=doc["nodes"],
        )

    doc = xb1json.loads(v1.raw)
    doc["admins"][0]["label"] = "admin of KZ\n+ admin forged"
    doc["nodes"][0]["name"] = "Kazakhstan\u202e"
    lines = diff(v1, version_2_of(doc))
    relabelled = f"~ admin {ADMINS['KZ'].kid} label 'admin of KZ' → 'admin of KZ\\n+ admin forged'"
    assert relabelled in lines
    assert "~ KZ name 'Kazakhstan' → 'Kazakhstan\\u202e'" in lines
    assert all("\n" not in line for line in lines)

    # A label that holds another admin's kid and fingerprint comes after the real ones,
    # in quotes: the line cannot read as that admin's.
    rogue = AdminKey.generate("rogue")
    uz = ADMINS["UZ"]
    disguise = f"admin of UZ {uz.kid} (fingerprint {fingerprint(uz.public)})"
    doc = xb1json.loads(v1.raw)
    doc["admins"].append({**rogue.entry(), "label": disguise})
    [added] = [line for line in diff(v1, version_2_of(doc)) if line.startswith("+ admin")]
    assert added == f"+ admin {rogue.kid} (fingerprint {fingerprint(rogue.public)}) {disguise!r}"

    # A diff against a list the proposal does not follow would mean nothing.
    with pytest.raises(ProposalError) as unrelated:
        diff(None, L(proposal))
    assert code_of(unrelated) == "proposal-not-successor"


def test_proposal_changes_are_checked() -> None:
    v1 = version_1()
    kz_sig = ring("KZ").current_signing.kid
    kg_enc = ring("KG").current_encryption.kid

    def refused(*changes: Any, issued_at: int = T0 + DAY, expires: int | None = None) -> str:
        with pytest.raises(ProposalError) as excinfo:
            propose(v1, changes=changes, issued_at=issued_at, expires=expires)
        return code_of(excinfo)

    assert refused(RemoveNode("TR")) == "proposal-unknown-node"
    assert refused(SetEndpoint("TR", "https://xb1.tr.example")) == "proposal-unknown-node"
    assert refused(AddKey("TR", entry("TR")["keys"][0])) == "proposal-unknown-node"
    assert refused(AddNode(entry("KZ"))) == "proposal-duplicate-node"
    assert refused(AddKey("KG", entry("KZ")["keys"][0])) == "proposal-duplicate-key"
    revoked_key = {**entry("TR")["keys"][0], "status": "revoked", "revoked_at": T0}
    assert refused(AddKey("KZ", revoked_key)) == "proposal-key-status"
    assert refused(RetireKey("0" * 32)) == "proposal-unknown-key"
    assert refused(RevokeKey(kz_sig), RetireKey(kz_sig)) == "proposal-key-status"
    assert refused(RemoveKey(kz_sig)) == "proposal-key-status"
    assert refused(RevokeKey(kg_enc), RemoveKey(kg_enc)) == "proposal-last-key"
    # A key revoked (or retired) and removed in one proposal: no version would list it
    # revoked, so no node would hold what it signed; the removal waits for a later one.
    another = key_entry(NEW_ADMINS[1].public, "sig", not_before=T0, not_after=T0 + YEAR)
    for change in (RevokeKey(kz_sig), RetireKey(kz_sig)):
        assert refused(AddKey("KZ", another), change, RemoveKey(kz_sig)) == "proposal-key-status"
        assert refused(AddKey("KZ", another), change, RemoveNode("KZ")) == "proposal-key-status"
    revoking = propose(v1, changes=[AddKey("KZ", another), RevokeKey(kz_sig)], issued_at=T0 + DAY)
    v2 = v1.verify_successor(signed(revoking, "KZ", "KG", "TM", current=v1), T0 + DAY)
    assert propose(v2, changes=[RemoveKey(kz_sig)], issued_at=T0 + 2 * DAY)
    assert refused(RevokeKey(kz_sig), RevokeKey(kz_sig, revoked_at=T0 + 2 * DAY)) == (
        "proposal-key-status"
    )
    new_key = key_entry(NEW_ADMINS[1].public, "sig", not_before=T0, not_after=T0 + YEAR)
    beyond = RetireKey(kz_sig, not_after=T0 + 5 * YEAR)
    assert refused(AddKey("KZ", new_key), beyond) == "proposal-key-time"
    assert refused(RemoveAdmin("f" * 32)) == "proposal-unknown-admin"
    assert refused(AddAdmin(ADMINS["KZ"].entry())) == "proposal-duplicate-admin"
    three_left = [RemoveAdmin(ADMINS[n].kid) for n in ("KZ", "KG", "TJ")]
    assert refused(*three_left) == "proposal-threshold"
    assert refused(SetThreshold(6)) == "proposal-threshold"
    assert refused(issued_at=T0 - 1) == "proposal-time"
    assert refused(issued_at=T0 + 2 * YEAR) == "proposal-expires"
    # Lowering the threshold with the admins removed in the same proposal is fine.
    assert propose(v1, changes=[*three_left, SetThreshold(2)], issued_at=T0 + DAY)

    # A proposal is signed only by admins, and only against the list it follows.
    proposal = propose(v1, issued_at=T0 + DAY)
    with pytest.raises(ProposalError) as stranger:
        sign(proposal, NEW_ADMINS[0], v1)
    assert code_of(stranger) == "proposal-not-admin"
    v2 = v1.verify_successor(signed(proposal, "KZ", "KG", "TJ", current=v1), T0 + DAY)
    with pytest.raises(ProposalError) as stale:
        status(propose(v2, issued_at=T0 + DAY), v1)
    assert code_of(stale) == "proposal-not-successor"


def test_admin_key_files(tmp_path: Path) -> None:
    path = tmp_path / "kz-admin.key"
    ADMINS["KZ"].save(path, PASSPHRASE, opslimit=OPSLIMIT_MIN, memlimit=MEMLIMIT_MIN)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    loaded = AdminKey.load(path, PASSPHRASE)
    assert (loaded.kid, loaded.label) == (ADMINS["KZ"].kid, "admin of KZ")
    assert "seed" not in repr(loaded) and loaded.pair.seed.hex() not in repr(loaded)
    for wrong in ("not the passphrase", None):
        with pytest.raises(KeyFileError) as excinfo:
            AdminKey.load(path, wrong)
        assert code_of(excinfo) == "key-file-passphrase"
    # A node's key ring is not an admin key, and an admin key is never stored in clear.
    node_file = tmp_path / "node-keys.json"
    ring("KZ").save(node_file, PASSPHRASE, opslimit=OPSLIMIT_MIN, memlimit=MEMLIMIT_MIN)
    with pytest.raises(KeyFileError) as node_key:
        AdminKey.load(node_file, PASSPHRASE)
    assert code_of(node_key) == "key-file-malformed"
    clear = tmp_path / "clear.key"
    write_key_file(clear, ADMINS["KZ"].to_secret_json(), None, unsafe_unsealed=True)
    with pytest.raises(KeyFileError) as unsealed:
        AdminKey.load(clear, None)
    assert code_of(unsealed) == "key-file-malformed"


def test_signed_versions_install_on_a_node(tmp_path: Path) -> None:
    instance = tmp_path / "kz"
    instance.mkdir()
    write_instance_file(instance, {"node": "KZ", "database_url": f"sqlite:///{tmp_path}/kz.db"})
    node = Node(load_settings(instance), keys=ring("KZ"))
    try:
        v1_wire = signed(version_1_wire(), "KZ", "KG", "TJ")
        anchor = hashlib.sha256(L(v1_wire)).hexdigest()
        with pytest.raises(TrustError):
            node.install_trust_list(v1_wire, anchor="0" * 64, now=T0)
        assert node.install_trust_list(v1_wire, anchor=anchor, now=T0).version == 1
        v1 = read_current(v1_wire)
        proposal = propose(v1, changes=[AddNode(entry("TR"))], issued_at=T0 + DAY)
        merged = merge(*(sign(proposal, ADMINS[n], v1) for n in ("TJ", "TM", "UZ")))
        installed = node.install_trust_list(merged, now=T0 + DAY)
        assert installed.version == 2 and "TR" in installed.node_ids
    finally:
        node.engine.dispose()


# ---------------------------------------------------------------------------- CLI


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def run(*args: str | Path, passphrase: str | None = None, input: str | None = None) -> Result:
    env = {"GATEWAY_ADMIN_PASSPHRASE": passphrase} if passphrase else {}
    return CliRunner().invoke(
        admin, [str(a) for a in args], env=env, input=input, prog_name="gateway admin"
    )


def gateway(instance: Path, *args: str | Path) -> Result:
    return CliRunner().invoke(
        main, ["--instance", str(instance), *map(str, args)], prog_name="gateway"
    )


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def refused(result: Result, code: str) -> str:
    """Exactly one line ``error [code]: sentence`` and exit status 2, never a traceback."""
    assert "Traceback" not in result.output
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error [")]
    assert len(lines) == 1, result.stderr
    match = re.fullmatch(r"error \[([a-z0-9-]+)\]: (.+)", lines[0])
    assert match and match.group(1) == code, result.stderr
    return match.group(2)


def write_admin(folder: Path, name: str) -> Path:
    """An admin's key file (fast test limits) and public file, as keygen writes them."""
    path = folder / f"{name.lower()}-admin.key"
    ADMINS[name].save(path, PASSPHRASE, opslimit=OPSLIMIT_MIN, memlimit=MEMLIMIT_MIN)
    Path(f"{path}.pub.json").write_bytes(xb1json.dumps(ADMINS[name].entry()) + b"\n")
    return path


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False))
    return path


def test_cli_from_bootstrap_to_installed_versions(tmp_path: Path) -> None:
    # The KZ operator creates the node and prints its entry for the administrators.
    instance = tmp_path / "kz-node"
    ok(gateway(instance, "init", "--node", "KZ", "--unsealed"))
    kz_entry = ok(
        gateway(instance, "keys", "entry", "--name", "Kazakhstan", "--endpoint", "https://kz.ex")
    )
    entries = [write_json(tmp_path / "kz-entry.json", json.loads(kz_entry))]
    entries += [
        write_json(tmp_path / f"{n.lower()}-entry.json", entry(n)) for n in list(STATES)[1:]
    ]

    # The KZ administrator makes a key (production limits, passphrase typed twice).
    kz_key = tmp_path / "kz-admin.key"
    made = ok(run("keygen", "--label", "A. Sadykova, KZ", "--out", kz_key, input="pw kz\n" * 2))
    kz_public = json.loads(Path(f"{kz_key}.pub.json").read_text())
    assert set(kz_public) == {"kid", "pub", "label"}
    assert f"kid {kz_public['kid']}" in made
    assert f"fingerprint {fingerprint(b64d(kz_public['pub']))}" in made
    refused(run("keygen", "--label", "again", "--out", kz_key, passphrase="x"), "file-exists")
    # Both files or neither: a key whose public part could not be written is not kept.
    full = tmp_path / "full-disk.key"
    with mock.patch.object(cli_admin, "_write", side_effect=OSError(28, "No space left")):
        refused(run("keygen", "--label", "x", "--out", full, passphrase="pw"), "file-error")
    assert sorted(p.name for p in tmp_path.glob("full-disk*")) == []
    refused(
        run("sign", "--key", kz_key, tmp_path / "kz-entry.json", passphrase="x"), "trust-malformed"
    )
    keys = {n: write_admin(tmp_path, n) for n in list(STATES)[1:]}

    # Bootstrap: the KZ administrator proposes version 1.
    v1 = tmp_path / "trust-list-v1.json"
    args = ["bootstrap", "--federation", "central-asia", "--threshold", "3", "--out", v1]
    args += ["--admin", f"{kz_key}.pub.json"]
    for path in keys.values():
        args += ["--admin", f"{path}.pub.json"]
    for path in entries:
        args += ["--node", path]
    shown = ok(run(*args))
    proposal = Proposal.from_wire(v1.read_bytes())
    anchor = proposal.sha256.hex()
    assert (
        "+ threshold 3 of 5 admins" in shown and f"SHA-256 of the proposed list: {anchor}" in shown
    )
    assert f"--anchor {anchor}" in shown
    for admin_entry in proposal.admins:
        assert f"(fingerprint {fingerprint(admin_entry.pub)})" in shown
    for node in proposal.nodes:
        for key in node.keys:
            assert f"(fingerprint {fingerprint(key.pub)})" in shown
    refused(run(*args), "file-exists")

    # Each administrator signs a copy on their own machine; the first one confirms by hand.
    copies = {n: tmp_path / f"v1-{n}.json" for n in ("KZ", "KG", "TJ")}
    for path in copies.values():
        shutil.copy(v1, path)
    refused(run("sign", "--key", kz_key, copies["KZ"], passphrase="wrong"), "key-file-passphrase")
    refused(
        run("sign", "--key", kz_key, copies["KZ"], passphrase="pw kz", input="n\n"),
        "not-confirmed",
    )
    no_answer = refused(
        run("sign", "--key", kz_key, copies["KZ"], passphrase="pw kz"), "not-confirmed"
    )
    assert "--yes" in no_answer and "Aborted" not in no_answer
    assert copies["KZ"].read_bytes() == v1.read_bytes()
    signing = ok(run("sign", "--key", kz_key, copies["KZ"], passphrase="pw kz", input="y\n"))
    assert (
        "Signing as A. Sadykova, KZ" in signing and "1 valid signature, 3 needed: 2 more" in signing
    )
    # --out never overwrites another file (a typo could name an admin key file).
    key_before = Path(keys["KG"]).read_bytes()
    args = ("sign", "--key", keys["KG"], "--yes", "--out", keys["KG"], copies["KG"])
    refused(run(*args, passphrase=PASSPHRASE), "file-exists")
    assert Path(keys["KG"]).read_bytes() == key_before
    for n in ("KG", "TJ"):
        ok(
            run(
                "sign",
                "--key",
                keys[n],
                "--yes",
                "--out",
                copies[n],
                copies[n],
                passphrase=PASSPHRASE,
            )
        )
    not_yet = ok(run("status", v1))
    assert (
        "0 valid signatures, 3 needed: 3 more" in not_yet
        and "not ready: [trust-threshold]" in not_yet
    )

    merged = ok(run("merge", v1, *copies.values()))
    assert "Merged 4 files into" in merged and "3 signatures" in merged
    assert "ready: nodes will install this version" in merged
    aloud = ok(run("anchor", v1))
    assert f"SHA-256: {anchor}" in aloud and f"  {anchor[:4]} {anchor[4:8]} " in aloud

    # The node installs version 1 pinned by the anchor.
    installed = ok(gateway(instance, "trust", "install", v1, "--anchor", anchor))
    assert "Installed trust list central-asia version 1 (5 nodes, threshold 3)." in installed

    # A sixth state joins: proposed, reviewed, signed on separate machines, merged.
    tr_entry = write_json(tmp_path / "tr-entry.json", entry("TR", "Türkiye"))
    v2 = tmp_path / "trust-list-v2.json"
    refused(
        run("propose", "--current", v1, "--remove-node", "TR", "--out", v2),
        "proposal-unknown-node",
    )
    assert not v2.exists()
    proposed = ok(run("propose", "--current", v1, "--add-node", tr_entry, "--out", v2))
    assert "+ node TR https://xb1.tr.example 'Türkiye'" in proposed
    assert ok(run("diff", "--current", v1, v2)).count("+ TR key") == 2
    refused(run("diff", v2), "proposal-not-successor")
    refused(run("sign", "--key", keys["KG"], v2, passphrase=PASSPHRASE), "proposal-needs-current")
    copies = {n: tmp_path / f"v2-{n}.json" for n in ("KG", "TM", "UZ")}
    for n, path in copies.items():
        shutil.copy(v2, path)
        ok(run("sign", "--key", keys[n], "--current", v1, "--yes", path, passphrase=PASSPHRASE))
    stray = tmp_path / "stray.json"
    shutil.copy(v1, stray)
    refused(run("merge", v2, copies["KG"], stray), "proposal-mismatch")
    # --current is read before anything is written: here no list (the unsigned v2).
    elsewhere = tmp_path / "merged-elsewhere.json"
    refused(run("merge", "--current", v2, elsewhere, *copies.values()), "trust-threshold")
    assert not elsewhere.exists()
    ok(run("merge", v2, *copies.values()))
    report = ok(run("status", "--current", v1, v2))
    assert "admins of version 1: 3 valid signatures, 3 needed: enough" in report
    assert "ready: nodes will install this version" in report
    installed = ok(gateway(instance, "trust", "install", v2))
    assert "central-asia version 2 (6 nodes, threshold 3)" in installed


def test_cli_rotation_revocation_and_admin_change(tmp_path: Path) -> None:
    keys = {n: write_admin(tmp_path, n) for n in STATES}
    now = int(time.time())
    v1 = tmp_path / "v1.json"
    v1.write_bytes(signed(version_1_wire(issued_at=now - 60), "KZ", "KG", "TJ"))
    newcomer = tmp_path / "newcomer.pub.json"
    newcomer.write_bytes(xb1json.dumps(NEW_ADMINS[0].entry()))
    new_sig = SigningKeyPair(hashlib.sha256(b"KZ rotated").digest())
    rotated = {**entry("KZ")}
    rotated["keys"] = [*rotated["keys"], key_entry(new_sig.public, "sig")]
    rotated_file = write_json(tmp_path / "kz-entry-rotated.json", rotated)
    old_sig = ring("KZ").current_signing.kid
    kg_sig = ring("KG").current_signing.kid
    v2 = tmp_path / "v2.json"
    common = ["propose", "--current", v1, "--out", v2]
    refused(run(*common, "--add-key", "KZ", tmp_path / "v1.json"), "proposal-bad-entry")
    refused(run(*common, "--add-key", "KG", rotated_file), "proposal-bad-entry")
    for keys_value in ([{"kid": [1]}], 5, [], ["kid"]):  # not key objects: no traceback
        bad = write_json(tmp_path / "bad-entry.json", {"node": "KZ", "keys": keys_value})
        refused(run(*common, "--add-key", "KZ", bad), "proposal-bad-entry")
    # Rotated twice before any version listed the first new key: that key (retired
    # since) is left out, the active one is proposed.
    twice = {
        **rotated,
        "keys": [*rotated["keys"], key_entry(b"\x05" * 32, "sig", status="retired")],
    }
    shown_twice = ok(run(*common, "--add-key", "KZ", write_json(tmp_path / "twice.json", twice)))
    assert f"+ KZ key {new_sig.kid} sig active" in shown_twice and "retired" not in shown_twice
    v2.unlink()
    refused(run(*common, "--retire-key", old_sig), "proposal-last-key")
    for not_a_time in ("tomorrow", "\u00b2"):  # "²": a digit to str.isdigit, not to int()
        result = run(*common, "--retire-key", old_sig, "--not-after", not_a_time)
        assert result.exit_code == 2 and "is not a time" in result.stderr, result.stderr
    shown = ok(
        run(
            *common,
            "--add-key",
            "KZ",
            rotated_file,
            "--retire-key",
            old_sig,
            "--not-after",
            "2028-01-01",
            "--revoke-key",
            kg_sig,
            "--revoked-at",
            "2029-06-01T12:00Z",
            "--add-admin",
            newcomer,
            "--remove-admin",
            ADMINS["TM"].kid,
            "--threshold",
            "4",
            "--expires-days",
            "30",
        )
    )
    assert f"+ KZ key {new_sig.kid} sig active" in shown
    assert f"(fingerprint {fingerprint(new_sig.public)})" in shown
    assert f"~ KZ key {old_sig} sig: active → retired; not_after " in shown
    assert "→ 2028-01-01 00:00:00 UTC" in shown
    assert f"~ KG key {kg_sig} sig: active → revoked at 2029-06-01 12:00:00 UTC" in shown
    assert f"+ admin {NEW_ADMINS[0].kid} (fingerprint " in shown
    assert "~ threshold 3 → 4" in shown and "~ expires " in shown

    # Threshold 4 of the new set and 3 of the old one: TM (removed) signs for version 1.
    for n in ("KZ", "KG", "TM"):
        ok(run("sign", "--key", keys[n], "--current", v1, "--yes", v2, passphrase=PASSPHRASE))
    report = ok(run("status", "--current", v1, v2))
    assert "admins of version 1: 3 valid signatures, 3 needed: enough" in report
    assert "admins of version 2: 2 valid signatures, 4 needed: 2 more" in report
    assert "not yet: admin of TJ, admin of UZ, admin of newcomer 1" in report
    for n in ("TJ", "UZ"):
        ok(run("sign", "--key", keys[n], "--current", v1, "--yes", v2, passphrase=PASSPHRASE))
    assert "ready: nodes will install" in ok(run("status", "--current", v1, v2))
    version_2 = read_current(v1.read_bytes()).verify_successor(v2.read_bytes(), now)
    assert version_2.threshold == 4


def test_cli_help_and_registration(tmp_path: Path) -> None:
    for name, command in admin.commands.items():
        result = CliRunner().invoke(admin, [name, "--help"], prog_name="gateway admin")
        assert result.exit_code == 0 and f"Usage: gateway admin {name}" in result.stdout
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, (name, param.opts)
    assert "needs no node" in ok(run("--help"))
    # Registered under the operator's command, errors keep the one-line form.
    group = GatewayGroup("gateway", commands={**main.commands, "admin": admin})
    not_a_list = tmp_path / "not-a-list.json"
    not_a_list.write_text("{}")
    result = CliRunner().invoke(group, ["admin", "anchor", str(not_a_list)])
    assert "wire members wrong" in refused(result, "trust-malformed")
    help_text = CliRunner().invoke(group, ["admin", "keygen", "--help"], prog_name="gateway")
    assert "Usage: gateway admin keygen" in ok(help_text)
