"""PROTOCOL §5 trust list: anchor, thresholds, successors, rollback, key usability."""

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys.keypair import EncryptionKeyPair, SigningKeyPair
from keys.nodekeys import NodeKeys
from keys.trustlist import (
    MAX_TIME,
    NodeKey,
    TrustedKeys,
    TrustError,
    TrustList,
    admin_entry,
    assemble,
    build_list,
    is_endpoint,
    key_entry,
    node_entry,
    sign_list,
)
from schemas.b64 import b64d, b64e

NOW = 1_700_000_000
DAY = 86_400
FED = "xb1-test"


def admin(name: str) -> SigningKeyPair:
    return SigningKeyPair(hashlib.sha256(b"test admin " + name.encode()).digest())


A1, A2, A3, A4, A5 = (admin(f"A{i}") for i in range(1, 6))
B1, B2, B3 = (admin(f"B{i}") for i in range(1, 4))
OUTSIDER = admin("outsider")
DE = NodeKeys.deterministic("DE", b"trustlist tests")
FR = NodeKeys.deterministic("FR-BKA", b"trustlist tests")


def nodes() -> list[dict[str, Any]]:
    return [
        node_entry(
            "DE", "Germany", "https://de.xb1.example", DE.current_signing, DE.current_encryption
        ),
        node_entry(
            "FR-BKA",
            "France",
            "https://fr.xb1.example",
            FR.current_signing,
            FR.current_encryption.public,
        ),
    ]


def make_l(
    version: int,
    *,
    prev: bytes | None,
    admins: tuple[SigningKeyPair, ...] = (A1, A2, A3),
    threshold: int = 2,
    issued_at: int | None = None,
    expires: int | None = None,
    node_list: list[dict[str, Any]] | None = None,
    federation: str = FED,
) -> bytes:
    issued = NOW - 10 * DAY + version if issued_at is None else issued_at
    return build_list(
        federation=federation,
        version=version,
        issued_at=issued,
        expires=NOW + 30 * DAY if expires is None else expires,
        prev=prev,
        threshold=threshold,
        admins=[admin_entry(a, f"admin {i}") for i, a in enumerate(admins)],
        nodes=nodes() if node_list is None else node_list,
    )


def wire(raw: bytes, *signers: SigningKeyPair) -> bytes:
    return assemble(raw, [sign_list(raw, s) for s in signers])


def sha(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


L1 = make_l(1, prev=None)
W1 = wire(L1, A1, A2)
V1 = TrustList.from_anchor(W1, sha(L1), NOW)


def code_of(excinfo: pytest.ExceptionInfo[TrustError]) -> str:
    return excinfo.value.code


# -- anchor (T3) ---------------------------------------------------------------------------


def test_anchor_accepts_pinned_version_1() -> None:
    assert V1.version == 1 and V1.prev is None and V1.federation == FED
    assert V1.sha256 == sha(L1) and V1.raw == L1 and V1.threshold == 2
    assert [a.kid for a in V1.admins] == [A1.kid, A2.kid, A3.kid]
    assert V1.node_ids == ("DE", "FR-BKA")
    entry = V1.node("FR-BKA")
    assert entry is not None and entry.endpoint == "https://fr.xb1.example"
    assert V1.node("IT") is None
    assert V1.keys.signing_key("DE", DE.current_signing.kid, NOW, NOW) == DE.current_signing.public
    assert TrustList.from_anchor(V1.to_wire(), sha(L1), NOW).raw == L1


def test_anchor_wrong_hash_refused() -> None:
    with pytest.raises(TrustError) as e:
        TrustList.from_anchor(W1, sha(L1 + b" "), NOW)
    assert code_of(e) == "trust-anchor-mismatch"


def test_a_later_version_given_for_the_anchor_is_named_as_such() -> None:
    """An operator installing version 2 on a new node is told that a node starts from
    version 1, not only that the hash differs."""
    l2 = make_l(2, prev=sha(L1))
    with pytest.raises(TrustError) as e:
        TrustList.from_anchor(wire(l2, A1, A2), sha(L1), NOW)
    assert code_of(e) == "trust-anchor-mismatch"
    assert "it is version 2" in e.value.message and "install version 1 first" in e.value.message
    with pytest.raises(TrustError) as e:
        TrustList.from_anchor(W1, sha(L1 + b" "), NOW)
    assert "version 2" not in e.value.message and "published" in e.value.message


def test_anchor_must_be_version_1() -> None:
    l2 = make_l(2, prev=sha(L1))
    with pytest.raises(TrustError) as e:
        TrustList.from_anchor(wire(l2, A1, A2), sha(l2), NOW)
    assert code_of(e) == "trust-anchor-mismatch"


def test_expired_anchor_is_kept_but_reports_expiry() -> None:
    raw = make_l(1, prev=None, issued_at=NOW - 10 * DAY, expires=NOW - DAY)
    old = TrustList.from_anchor(wire(raw, A1, A2), sha(raw), NOW)
    assert old.is_expired(NOW) and not V1.is_expired(NOW)
    assert V1.is_expired(V1.expires)


# -- threshold (T2) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signatures",
    [
        pytest.param(lambda raw: [sign_list(raw, A1)], id="too-few"),
        pytest.param(lambda raw: [sign_list(raw, A1), sign_list(raw, A1)], id="same-admin-twice"),
        pytest.param(lambda raw: [sign_list(raw, A1), sign_list(raw, OUTSIDER)], id="non-admin"),
        pytest.param(lambda raw: [sign_list(raw, A1), sign_list(raw + b"x", A2)], id="bad-sig"),
        pytest.param(
            lambda raw: [sign_list(raw, A1), {"kid": A2.kid, "sig": sign_list(raw, A3)["sig"]}],
            id="sig-under-wrong-kid",
        ),
        pytest.param(lambda raw: [], id="none"),
    ],
)
def test_threshold_not_met(signatures: Any) -> None:
    with pytest.raises(TrustError) as e:
        TrustList.from_anchor(assemble(L1, signatures(L1)), sha(L1), NOW)
    assert code_of(e) == "trust-threshold"


def test_ignored_signatures_do_not_spoil_valid_ones() -> None:
    bad = sign_list(L1 + b"x", A3)
    sigs = [sign_list(L1, OUTSIDER), bad, sign_list(L1, A1), sign_list(L1, A1), sign_list(L1, A2)]
    assert TrustList.from_anchor(assemble(L1, sigs), sha(L1), NOW).version == 1


def test_invalid_then_valid_signature_by_same_admin_counts() -> None:
    sigs = [sign_list(L1 + b"x", A1), sign_list(L1, A1), sign_list(L1, A2)]
    assert TrustList.from_anchor(assemble(L1, sigs), sha(L1), NOW).version == 1


ADMINS5 = (A1, A2, A3, A4, A5)
L_T3 = make_l(1, prev=None, admins=ADMINS5, threshold=3)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(ADMINS5 + (OUTSIDER,)), max_size=8))
def test_threshold_counts_distinct_admins(signers: list[SigningKeyPair]) -> None:
    distinct_admins = {s.kid for s in signers if s is not OUTSIDER}
    w = wire(L_T3, *signers)
    if len(distinct_admins) >= 3:
        assert TrustList.from_anchor(w, sha(L_T3), NOW).version == 1
    else:
        with pytest.raises(TrustError) as e:
            TrustList.from_anchor(w, sha(L_T3), NOW)
        assert code_of(e) == "trust-threshold"


# -- successors (T4–T9) --------------------------------------------------------------------


def test_successor_accepted() -> None:
    l2 = make_l(2, prev=V1.sha256)
    v2 = V1.verify_successor(wire(l2, A2, A3), NOW)
    assert v2.version == 2 and v2.prev == V1.sha256


def test_admin_change_needs_old_and_new_thresholds() -> None:
    l2 = make_l(2, prev=V1.sha256, admins=(B1, B2, B3), threshold=2)
    for signers, ok in [
        ((B1, B2, B3), False),
        ((A1, A2, A3), False),
        ((A1, B1, B2), False),
        ((A1, A2, B1), False),
        ((A1, A2, B1, B3), True),
    ]:
        if ok:
            assert V1.verify_successor(wire(l2, *signers), NOW).admins[0].kid == B1.kid
        else:
            with pytest.raises(TrustError) as e:
                V1.verify_successor(wire(l2, *signers), NOW)
            assert code_of(e) == "trust-threshold"


def test_threshold_raise_needs_new_threshold() -> None:
    l2 = make_l(2, prev=V1.sha256, threshold=3)
    with pytest.raises(TrustError) as e:
        V1.verify_successor(wire(l2, A1, A2), NOW)
    assert code_of(e) == "trust-threshold"
    assert V1.verify_successor(wire(l2, A1, A2, A3), NOW).threshold == 3


def test_rollback_older_or_equal_version_refused() -> None:
    v2 = V1.verify_successor(wire(make_l(2, prev=V1.sha256), A1, A2), NOW)
    for old in (W1, v2.to_wire()):
        with pytest.raises(TrustError) as e:
            v2.verify_successor(old, NOW)
        assert code_of(e) == "trust-rollback"


def test_skipped_version_refused_unless_chain_walked() -> None:
    l2 = make_l(2, prev=V1.sha256)
    l3 = make_l(3, prev=sha(l2))
    with pytest.raises(TrustError) as e:
        V1.verify_successor(wire(l3, A1, A2), NOW)
    assert code_of(e) == "trust-rollback"
    assert V1.verify_chain([wire(l2, A1, A2), wire(l3, A1, A2)], NOW).version == 3


def test_prev_mismatch_refused() -> None:
    for prev in (sha(b"another list"), sha(L1 + b"\n")):
        with pytest.raises(TrustError) as e:
            V1.verify_successor(wire(make_l(2, prev=prev), A1, A2), NOW)
        assert code_of(e) == "trust-chain"


def test_federation_change_refused() -> None:
    l2 = make_l(2, prev=V1.sha256, federation="other")
    with pytest.raises(TrustError) as e:
        V1.verify_successor(wire(l2, A1, A2), NOW)
    assert code_of(e) == "trust-chain"


def test_issued_at_going_back_refused() -> None:
    l2 = make_l(2, prev=V1.sha256, issued_at=V1.issued_at - 1)
    with pytest.raises(TrustError) as e:
        V1.verify_successor(wire(l2, A1, A2), NOW)
    assert code_of(e) == "trust-time"
    same = make_l(2, prev=V1.sha256, issued_at=V1.issued_at)
    assert V1.verify_successor(wire(same, A1, A2), NOW).issued_at == V1.issued_at


def test_a_successor_issued_more_than_a_day_ahead_is_refused_as_new_only() -> None:
    """T10: a list dated ahead by a wrong clock would stop every version issued before
    that date (T7), a revocation among them: refused when new, not when walked again."""
    ahead = make_l(2, prev=V1.sha256, issued_at=NOW + DAY + 1, expires=NOW + 40 * DAY)
    with pytest.raises(TrustError) as e:
        V1.verify_successor(wire(ahead, A1, A2), NOW)
    assert code_of(e) == "trust-time" and "clock" in str(e.value)
    slightly = make_l(2, prev=V1.sha256, issued_at=NOW + DAY, expires=NOW + 40 * DAY)
    assert V1.verify_successor(wire(slightly, A1, A2), NOW).version == 2
    # Installed earlier (when the clock said otherwise): loaded all the same.
    assert V1.verify_chain([wire(ahead, A1, A2)], NOW, installed=True).version == 2


def test_expired_successor_refused_but_expired_intermediate_walked() -> None:
    l2 = make_l(2, prev=V1.sha256, expires=NOW)
    with pytest.raises(TrustError) as e:
        V1.verify_successor(wire(l2, A1, A2), NOW)
    assert code_of(e) == "trust-expired"
    l3 = make_l(3, prev=sha(l2))
    assert V1.verify_chain([wire(l2, A1, A2), wire(l3, A1, A2)], NOW).version == 3
    with pytest.raises(TrustError) as e:
        V1.verify_chain([wire(make_l(2, prev=V1.sha256), A1, A2), wire(l2, A1, A2)], NOW)
    assert code_of(e) == "trust-rollback"  # the second one is version 2 again


def test_chain_walk_three_versions_with_admin_and_key_rotation() -> None:
    # v2: B admins join (signed by old and new), DE rotates its signing key.
    de_new = SigningKeyPair(hashlib.sha256(b"DE new sig").digest())
    rotated = nodes()
    rotated[0]["keys"] = [
        key_entry(
            DE.current_signing.public, "sig", not_before=0, not_after=NOW - DAY, status="retired"
        ),
        key_entry(de_new.public, "sig", not_before=NOW - DAY),
        key_entry(DE.current_encryption.public, "enc"),
    ]
    l2 = make_l(2, prev=V1.sha256, admins=(A1, B1, B2), node_list=rotated)
    # v3: old DE key revoked, A1 leaves.
    revoked = json.loads(json.dumps(rotated))
    revoked[0]["keys"][0] = key_entry(
        DE.current_signing.public,
        "sig",
        not_before=0,
        not_after=NOW - DAY,
        status="revoked",
        revoked_at=NOW - 5,
    )
    l3 = make_l(3, prev=sha(l2), admins=(B1, B2, B3), node_list=revoked)
    v3 = V1.verify_chain([wire(l2, A1, A2, B1), wire(l3, B1, B2)], NOW)
    assert v3.version == 3 and v3.prev == sha(l2)
    assert v3.keys.signing_key("DE", de_new.kid, NOW, NOW) == de_new.public
    with pytest.raises(TrustError) as e:
        v3.keys.signing_key("DE", DE.current_signing.kid, NOW - 2 * DAY, NOW)
    assert code_of(e) == "key-not-valid"
    assert V1.verify_chain([], NOW) is V1
    assert TrustList.from_pinned(v3.to_wire(), v3.sha256).version == 3


def test_chain_stops_at_first_bad_version() -> None:
    l2 = make_l(2, prev=V1.sha256)
    l3 = make_l(3, prev=sha(l2))
    with pytest.raises(TrustError) as e:
        V1.verify_chain([wire(l2, A1, A2), wire(l3, A1)], NOW)
    assert code_of(e) == "trust-threshold"


def test_pinned_reload_checks_hash_and_signatures() -> None:
    with pytest.raises(TrustError) as e:
        TrustList.from_pinned(W1, sha(b"x"))
    assert code_of(e) == "trust-anchor-mismatch"
    with pytest.raises(TrustError) as e:
        TrustList.from_pinned(wire(L1, A1), sha(L1))
    assert code_of(e) == "trust-threshold"


# -- tampering and strict parsing (T1) -----------------------------------------------------

L2 = make_l(2, prev=V1.sha256)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_flipping_any_byte_of_l_is_refused(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(L2) - 1))
    mask = data.draw(st.integers(1, 255))
    tampered = bytearray(L2)
    tampered[index] ^= mask
    sigs = [sign_list(L2, A1), sign_list(L2, A2)]
    with pytest.raises(TrustError):
        V1.verify_successor(assemble(bytes(tampered), sigs), NOW)
    with pytest.raises(TrustError):
        TrustList.from_anchor(
            assemble(bytes(tampered), [sign_list(L1, A1), sign_list(L1, A2)]), sha(L1), NOW
        )


def _doc() -> dict[str, Any]:
    return json.loads(L2)


BAD_ENDPOINTS = {
    "scheme": "ftp://x",
    "no-host": "https://",
    "space": "https://x/a b",
    "control": "https://x\x00y",
    "ls": "https://xb1.kz\u2028",
    "port-only": "https://:",
    "user": "https://@x",
    "query-only": "https://?x",
    "fragment": "https://x/#f",
    "port-0": "https://x:0",
    "port-big": "https://x:99999",
    "port-empty": "https://x:",
    "v4-brackets": "https://[1.2.3.4]",
    "empty-label": "https://a..b",
    "query": "https://x/b?q=1",
    "backslash": "https://x/a\\b",
    # Read differently by a sender's URL parser or resolver than listed:
    "after-bracket": "https://[::1]x",  # dropped by a URL parser
    "host-after-bracket": "https://[2001:db8::1]evil.example/x",
    "zone-id": "https://[fe80::1%25eth0]",  # an interface of the sender's host
    "hex-name": "https://0x7f.1",  # resolvers read numeric names as addresses
    "number": "https://123",
    "short-v4": "https://10.1",
    "bad-v4": "https://256.256.256.256",
    "dot-segment": "https://h/a/../b",  # collapsed by clients: another path
    "braces": "https://h/{x}",  # re-encoded by clients
    "bad-escape": "https://h/%zz",
}


def _mutations() -> list[Any]:
    def set_(path: tuple[Any, ...], value: Any) -> Any:
        def mutate(doc: dict[str, Any]) -> None:
            target: Any = doc
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = value

        return mutate

    def delete(path: tuple[Any, ...]) -> Any:
        def mutate(doc: dict[str, Any]) -> None:
            target: Any = doc
            for step in path[:-1]:
                target = target[step]
            del target[path[-1]]

        return mutate

    def dup_node(doc: dict[str, Any]) -> None:
        doc["nodes"][1]["node"] = "DE"

    def dup_kid(doc: dict[str, Any]) -> None:
        doc["nodes"][1]["keys"][0] = doc["nodes"][0]["keys"][0]

    def revoked_at(when: Any) -> Callable[[dict[str, Any]], None]:
        def mutate(doc: dict[str, Any]) -> None:
            doc["nodes"][0]["keys"][0].update(status="revoked", revoked_at=when)

        return mutate

    def window_reversed(doc: dict[str, Any]) -> None:
        doc["nodes"][0]["keys"][0].update(not_before=10, not_after=5)

    other = b64e(FR.current_signing.public)
    return [
        pytest.param(set_(("suite",), "xb2"), id="suite"),
        pytest.param(set_(("extra",), 1), id="extra-member"),
        pytest.param(delete(("expires",)), id="missing-member"),
        pytest.param(set_(("version",), True), id="bool-version"),
        pytest.param(set_(("version",), "2"), id="string-version"),
        pytest.param(set_(("prev",), None), id="null-prev-after-v1"),
        pytest.param(set_(("prev",), b64e(bytes(31))), id="short-prev"),
        pytest.param(set_(("threshold",), 0), id="threshold-zero"),
        pytest.param(set_(("threshold",), 4), id="threshold-above-admins"),
        pytest.param(set_(("issued_at",), NOW + 30 * DAY), id="issued-not-before-expires"),
        pytest.param(set_(("issued_at",), -1), id="negative-time"),
        pytest.param(set_(("admins",), []), id="no-admins"),
        pytest.param(set_(("admins", 0, "kid"), "0" * 32), id="admin-kid-mismatch"),
        pytest.param(set_(("admins", 1), None), id="admin-not-object"),
        pytest.param(set_(("nodes", 0, "node"), "de"), id="lowercase-node"),
        pytest.param(set_(("nodes", 0, "node"), "DE-"), id="node-empty-suffix"),
        pytest.param(set_(("nodes", 0, "node"), "DE-ABCDEFGHIJKLMNOPQ"), id="node-long-suffix"),
        pytest.param(set_(("nodes", 0, "node"), "DE\n"), id="node-newline"),
        pytest.param(dup_node, id="duplicate-node"),
        pytest.param(dup_kid, id="duplicate-kid"),
        *(
            pytest.param(set_(("nodes", 0, "endpoint"), url), id=f"endpoint-{name}")
            for name, url in BAD_ENDPOINTS.items()
        ),
        pytest.param(set_(("nodes", 0, "keys", 0, "pub"), other), id="key-kid-mismatch"),
        pytest.param(set_(("nodes", 0, "keys", 0, "pub"), b64e(bytes(32)) + "="), id="padded-b64"),
        pytest.param(set_(("nodes", 0, "keys", 0, "use"), "both"), id="bad-use"),
        pytest.param(revoked_at("soon"), id="revoked-at-not-a-time"),
        pytest.param(revoked_at(-1), id="revoked-at-negative"),
        pytest.param(set_(("nodes", 0, "keys", 0, "revoked_at"), 5), id="revoked-at-on-active"),
        pytest.param(window_reversed, id="window-reversed"),
        pytest.param(set_(("nodes", 0, "keys"), []), id="node-without-keys"),
        pytest.param(delete(("nodes", 0, "keys", 1)), id="node-without-enc-key"),
    ]


@pytest.mark.parametrize("mutate", _mutations())
def test_malformed_list_refused(mutate: Any) -> None:
    doc = _doc()
    mutate(doc)
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(TrustError) as e:
        V1.verify_successor(wire(raw, A1, A2), NOW)
    assert code_of(e) == "trust-malformed"


def test_a_key_revoked_without_a_time_is_accepted_and_refused_for_everything() -> None:
    """§5 lists ``revoked_at`` as optional: a version revoking a key without saying
    since when is well formed (refusing it would keep the node on the version where
    the key is still trusted), and the key then vouches for nothing."""
    doc = _doc()
    key = doc["nodes"][0]["keys"][0]
    assert key["use"] == "sig"
    key["status"] = "revoked"
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    v2 = V1.verify_successor(wire(raw, A1, A2), NOW)
    [listed] = [k for k in v2.keys.keys_of(doc["nodes"][0]["node"]) if k.kid == key["kid"]]
    assert (listed.status, listed.revoked_at) == ("revoked", None)
    assert "revoked_at" not in listed.to_entry()
    for iat in (key["not_before"], NOW - DAY, NOW):
        assert not listed.usable(iat, NOW)
    assert listed.revoked_by(0)
    with pytest.raises(TrustError) as e:
        v2.keys.signing_key(doc["nodes"][0]["node"], key["kid"], NOW - DAY, NOW)
    assert code_of(e) == "key-not-valid"


def test_builder_validates_unless_told_not_to() -> None:
    kwargs: dict[str, Any] = dict(
        federation=FED,
        version=1,
        issued_at=1,
        expires=2,
        prev=None,
        threshold=5,
        admins=[admin_entry(A1, "a")],
        nodes=[],
    )
    with pytest.raises(TrustError):
        build_list(**kwargs)
    assert build_list(**kwargs, validate=False)


@pytest.mark.parametrize(
    "outer",
    [
        b"not json",
        b"[]",
        json.dumps({"list": b64e(L2)}).encode(),
        json.dumps({"list": b64e(L2), "signatures": [], "x": 1}).encode(),
        json.dumps({"list": b64e(L2) + "=", "signatures": []}).encode(),
        json.dumps({"list": b64e(L2), "signatures": {}}).encode(),
        json.dumps({"list": b64e(L2), "signatures": [{"kid": A1.kid}]}).encode(),
        json.dumps(
            {"list": b64e(L2), "signatures": [{"kid": "A" * 32, "sig": b64e(bytes(64))}]}
        ).encode(),
        json.dumps(
            {"list": b64e(L2), "signatures": [{"kid": A1.kid, "sig": b64e(bytes(63))}]}
        ).encode(),
        b'{"list":"' + b64e(b" " + L2).encode() + b'","signatures":[]}',  # non-canonical L
    ],
)
def test_malformed_wire_refused(outer: bytes) -> None:
    with pytest.raises(TrustError) as e:
        V1.verify_successor(outer, NOW)
    assert code_of(e) == "trust-malformed"


def test_trust_list_cannot_be_built_or_changed_directly() -> None:
    with pytest.raises(TypeError):
        TrustList(L1, (), None)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        V1.version = 9  # type: ignore[misc]


def test_wire_round_trip_keeps_signatures() -> None:
    outer = json.loads(V1.to_wire())
    assert b64d(outer["list"]) == L1
    assert outer["signatures"] == [sign_list(L1, A1), sign_list(L1, A2)]


# -- key usability (K1) --------------------------------------------------------------------

SIG = SigningKeyPair(hashlib.sha256(b"usability").digest())


def nk(status: str, revoked_at: int | None = None, nb: int = 100, na: int = 200) -> NodeKey:
    return NodeKey("DE", SIG.kid, "sig", SIG.public, nb, na, status, revoked_at)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "iat", "now", "usable"),
    [
        (nk("active"), 50, 300, True),  # active: usable whatever the window
        (nk("active"), 150, 150, True),
        (nk("retired"), 100, 300, True),  # window bounds are inclusive
        (nk("retired"), 200, 300, True),
        (nk("retired"), 99, 300, False),
        (nk("retired"), 201, 300, False),
        (nk("revoked", 170), 150, 170, False),  # from revoked_at on: back-dated iat refused
        (nk("revoked", 170), 150, 10_000, False),
        (nk("revoked", 170), 150, 169, True),  # revocation still in the future: like retired
        (nk("revoked", 170), 99, 169, False),
        (nk("revoked", 170), 170, 169, False),  # but never for a message dated after it
        (nk("revoked", None), 150, 150, False),  # revoked with no time: never
    ],
)
def test_key_usability_matrix(key: NodeKey, iat: int, now: int, usable: bool) -> None:
    assert key.usable(iat, now) is usable


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_revoked_key_never_usable_from_revoked_at(revoked_at: int, iat: int, now: int) -> None:
    key = NodeKey("DE", SIG.kid, "sig", SIG.public, 0, MAX_TIME, "revoked", revoked_at)
    if now >= revoked_at:
        assert not key.usable(iat, now)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kid": "0" * 32},
        {"pub": bytes(31)},
        {"node": "Germany"},
        {"use": "verify"},
        {"status": "lost"},
        {"not_before": 300},
        {"not_after": True},
        {"revoked_at": 5},
    ],
)
def test_node_key_constructor_checks(kwargs: dict[str, Any]) -> None:
    fields: dict[str, Any] = dict(
        node="DE",
        kid=SIG.kid,
        use="sig",
        pub=SIG.public,
        not_before=100,
        not_after=200,
        status="active",
    )
    fields.update(kwargs)
    with pytest.raises(ValueError):
        NodeKey(**fields)


# -- sender and recipient lookup (K2, K3) -------------------------------------------------

ENC_OLD = EncryptionKeyPair(hashlib.sha256(b"enc old").digest())
ENC_NEW = EncryptionKeyPair(hashlib.sha256(b"enc new").digest())
ENC_FUTURE = EncryptionKeyPair(hashlib.sha256(b"enc future").digest())
SIG_REVOKED = SigningKeyPair(hashlib.sha256(b"revoked").digest())

TRUSTED = TrustedKeys.from_entries(
    [
        {"node": "DE", "kid": SIG.kid, "pub": b64e(SIG.public)},
        {
            "node": "DE",
            "kid": SIG_REVOKED.kid,
            "pub": b64e(SIG_REVOKED.public),
            "status": "revoked",
            "revoked_at": NOW - 10,
        },
        {
            "node": "DE",
            "kid": ENC_OLD.kid,
            "pub": b64e(ENC_OLD.public),
            "use": "enc",
            "not_before": 10,
        },
        {
            "node": "DE",
            "kid": ENC_NEW.kid,
            "pub": b64e(ENC_NEW.public),
            "use": "enc",
            "not_before": 20,
        },
        {
            "node": "DE",
            "kid": ENC_FUTURE.kid,
            "pub": b64e(ENC_FUTURE.public),
            "use": "enc",
            "not_before": NOW + DAY,
        },
        {"node": "FR", "kid": FR.current_signing.kid, "pub": b64e(FR.current_signing.public)},
    ]
)


def test_sender_lookup() -> None:
    assert TRUSTED.signing_key("DE", SIG.kid, NOW, NOW) == SIG.public
    cases = [
        ("DE", "0" * 32, "unknown-sender"),  # unknown kid
        ("FR", SIG.kid, "unknown-sender"),  # another node's key
        ("IT", SIG.kid, "unknown-sender"),  # unknown node
        ("DE", ENC_NEW.kid, "unknown-sender"),  # an enc key is not a sig key
        ("DE", SIG_REVOKED.kid, "key-not-valid"),
    ]
    for node, kid, code in cases:
        with pytest.raises(TrustError) as e:
            TRUSTED.signing_key(node, kid, NOW - DAY, NOW)
        assert code_of(e) == code, (node, kid)


def test_recipient_lookup() -> None:
    assert TRUSTED.encryption_key("DE", NOW).kid == ENC_NEW.kid
    assert TRUSTED.encryption_key("DE", NOW + DAY).kid == ENC_FUTURE.kid
    for node in ("FR", "IT"):
        with pytest.raises(TrustError) as e:
            TRUSTED.encryption_key(node, NOW)
        assert code_of(e) == "unknown-recipient"
    assert {k.kid for k in TRUSTED.keys_of("DE")} >= {SIG.kid, ENC_OLD.kid}
    assert TRUSTED.keys_of("IT") == ()


@pytest.mark.parametrize(
    "entry",
    [
        {"node": "DE", "kid": "0" * 32, "pub": b64e(SIG.public)},
        {"node": "DE", "kid": SIG.kid},
        {"node": "DE", "kid": SIG.kid, "pub": b64e(SIG.public) + "="},
        {"node": "DE", "kid": SIG.kid, "pub": b64e(SIG.public), "status": "lost"},
    ],
)
def test_from_entries_refuses_bad_entries(entry: dict[str, Any]) -> None:
    with pytest.raises(TrustError) as e:
        TrustedKeys.from_entries([entry])
    assert code_of(e) == "trust-malformed"


def test_from_entries_refuses_duplicate_kid() -> None:
    entry = {"node": "DE", "kid": SIG.kid, "pub": b64e(SIG.public)}
    with pytest.raises(TrustError):
        TrustedKeys.from_entries([entry, entry | {"node": "FR"}])


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://xb1.kz.example",
        "https://xb1.kz.example.",
        "http://127.0.0.1:18082",
        "https://[2001:db8::1]:8443/xb1",
        "https://xn--80ak6aa92e.kz/gateway/",
    ],
)
def test_endpoints_of_every_usual_form_are_accepted(endpoint: str) -> None:
    assert is_endpoint(endpoint)
