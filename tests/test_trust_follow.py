"""Nodes follow the trust list a peer announces in ``tl`` (PROTOCOL §5): fetch,
verify the whole chain, only then use it; forged lists are refused and stay
visible; nodes briefly on different versions converge without losing a message."""

from __future__ import annotations

import json
import time

from sqlalchemy import select

from gateway.dispatcher import Dispatcher
from gateway.models import InboundMessage, TrustHint
from gateway.trust_sync import TrustFollower
from keys.keypair import SigningKeyPair
from keys.nodekeys import NodeKeys
from keys.trustlist import TrustList, admin_entry, assemble, build_list, key_entry, sign_list
from schemas.b64 import b64e
from schemas.examples import example_alert
from tests.conftest import sqlite_only


def next_version(fed, current: TrustList, *, signers=None, node_keys=None) -> bytes:
    """Version N+1 of ``current``; ``node_keys`` replaces a node's key entries."""
    now = int(time.time())
    nodes = []
    for entry in current.nodes:
        keys = [k.to_entry() for k in entry.keys]
        if node_keys and entry.node in node_keys:
            keys = node_keys[entry.node]
        nodes.append(
            {"node": entry.node, "name": entry.name, "endpoint": entry.endpoint, "keys": keys}
        )
    raw = build_list(
        federation=current.federation,
        version=current.version + 1,
        issued_at=now,
        expires=now + 86400,
        prev=current.sha256,
        threshold=current.threshold,
        admins=[admin_entry(a.pub, a.label) for a in current.admins],
        nodes=nodes,
    )
    return assemble(raw, [sign_list(raw, a) for a in (signers or fed.admins[:2])])


def submit(member, to):
    answer = member.client().post(
        "/api/v1/messages",
        headers=member.auth(),
        json={"typ": "alert/1", "body": example_alert(), "to": to},
    )
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["id"]


def hints(member):
    with member.node.sessions() as session:
        return {h.peer: (h.version, h.last_error) for h in session.scalars(select(TrustHint))}


def test_a_higher_tl_makes_the_receiver_fetch_verify_and_use_the_chain(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    v2 = next_version(fed, kz.node.trust())
    kz.node.install_trust_list(v2)
    v3 = next_version(fed, kz.node.trust())
    kz.node.install_trust_list(v3)

    submit(kz, ["KG"])
    [outcome] = Dispatcher(kz.node).run_once()
    assert outcome.state == "delivered", outcome
    assert kg.node.trust().version == 1 and hints(kg) == {"KZ": (3, None)}

    installed = TrustFollower(kg.node).run_once()
    assert installed is not None and installed.version == 3
    assert kg.node.trust().sha256 == kz.node.trust().sha256
    assert kg.node.trust_list_version(2) is not None  # the walked version is kept
    assert hints(kg) == {}


def test_following_a_version_with_other_keys_for_this_node_is_logged(make_federation, caplog):
    # The administrators built version 2 with another KG entry (say, from an old key
    # file): KG follows it, as the chain verifies, and its log says what will fail.
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    stranger = NodeKeys.generate("KG")
    _ = kg.node.keys  # loaded, as in a running dispatcher
    v2 = next_version(
        fed,
        kz.node.trust(),
        node_keys={
            "KG": [
                key_entry(stranger.current_signing.public, "sig"),
                key_entry(stranger.current_encryption.public, "enc"),
            ]
        },
    )
    kz.node.install_trust_list(v2)
    with caplog.at_level("WARNING", logger="gateway.trust_sync"):
        installed = TrustFollower(kg.node).follow("KZ")
    assert installed is not None and installed.version == 2
    said = [r.getMessage() for r in caplog.records if r.name == "gateway.trust_sync"]
    assert len(said) == 2, said
    assert said[0].startswith("under trust list version 2: no signing key of the key file")
    assert f"peers encrypt to {stranger.current_encryption.kid}" in said[1]


def test_a_forged_newer_list_is_refused_and_stays_visible(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    rogues = [SigningKeyPair(bytes([i]) * 32) for i in (7, 8)]
    forged = next_version(fed, kz.node.trust(), signers=rogues)
    # KZ's operator is fooled into serving it (installing it locally is refused too).
    kz_served = kz.server.switch.app

    def serve_forged(environ, start_response):
        if environ["PATH_INFO"] == "/xb1/trust-list":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [forged]
        return kz_served(environ, start_response)

    kz.server.switch.app = serve_forged
    from gateway.trust_sync import note_announcement

    note_announcement(kg.node, "KZ", 2, int(time.time()))
    assert TrustFollower(kg.node).run_once() is None
    assert kg.node.trust().version == 1
    version, error = hints(kg)["KZ"]
    assert version == 2 and "trust-threshold" in error
    ready = kg.client().get("/readyz")
    assert ready.status_code == 503
    assert [a["code"] for a in ready.get_json()["alarms"]] == ["trust-list-behind"]


def _trickling(member, path: str):
    """Make ``member`` answer ``path`` with a large body sent a byte every 0.2 s (well
    within the peer timeout of 2 s each, for far longer in all: 30 s at most)."""
    served = member.server.switch.app

    def app(environ, start_response):
        if environ["PATH_INFO"] != path:
            return served(environ, start_response)
        start_response("200 OK", [("Content-Type", "application/json")])

        def body():
            for _ in range(150):
                yield b" "
                time.sleep(0.2)

        return body()

    member.server.switch.app = app


@sqlite_only
def test_a_member_trickling_its_list_holds_the_follower_two_peer_timeouts_at_most(
    make_federation,
):
    """The dispatcher follows announcements before it sends: a member that serves its
    trust list a byte at a time, each within the peer timeout, must not hold every
    delivery for as long as it likes."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    _trickling(kz, "/xb1/trust-list")
    from gateway.trust_sync import note_announcement

    note_announcement(kg.node, "KZ", 2, int(time.time()))
    began = time.monotonic()
    assert TrustFollower(kg.node).run_once() is None
    took = time.monotonic() - began
    limit = 2 * kg.node.settings.peer_timeout
    assert limit <= took < limit + 3, took
    version, error = hints(kg)["KZ"]
    assert version == 2 and f"no complete answer within {limit:g} s" in error


@sqlite_only
def test_a_member_claiming_many_versions_and_serving_each_slowly_is_bounded_too(
    make_federation,
):
    """One budget for all a member serves: a list claiming version 30 comes at once,
    then each version in between takes most of a request's own limit."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    current = kg.node.trust()
    claimed = {"list": b64e(json.dumps({"version": current.version + 29}).encode())}
    served = kz.server.switch.app
    per_request = 2 * kg.node.settings.peer_timeout

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/xb1/trust-list":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(claimed).encode()]
        if environ["PATH_INFO"].startswith("/xb1/trust-list/versions/"):
            time.sleep(0.8 * kg.node.settings.peer_timeout)  # in time for one request
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b"{}"]
        return served(environ, start_response)

    kz.server.switch.app = app
    from gateway.trust_sync import note_announcement

    note_announcement(kg.node, "KZ", current.version + 29, int(time.time()))
    began = time.monotonic()
    assert TrustFollower(kg.node).run_once() is None
    took = time.monotonic() - began
    assert took < per_request + 3, took
    version, error = hints(kg)["KZ"]
    assert "no complete answer within" in error


def test_nodes_on_different_versions_converge_without_losing_a_message(make_federation):
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg = fed["KZ"], fed["KG"]
    now = int(time.time())
    # Version 2 rotates KZ's signing key: the new key active, the old one retired.
    rotated = kz.keys.rotate_signing(now=now)
    old = kz.node.trust().node("KZ")
    keys = []
    for key in old.keys:
        entry = key.to_entry()
        if key.use == "sig":
            entry.update(status="retired", not_after=now + 3600)
        keys.append(entry)
    keys.append(
        key_entry(rotated.current_signing.public, "sig", not_before=now - 60, not_after=now + 86400)
    )
    kz.node.install_trust_list(next_version(fed, kz.node.trust(), node_keys={"KZ": keys}))
    kz.node.keys = rotated

    message_id = submit(kz, ["KG"])
    dispatcher = Dispatcher(kz.node)
    [outcome] = dispatcher.run_once()
    # KG still has version 1: it does not know the new key yet.
    assert (outcome.state, outcome.code) == ("retrying", "unknown-sender")
    assert hints(kg) == {"KZ": (2, None)}

    assert TrustFollower(kg.node).run_once().version == 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        outcomes = dispatcher.run_once(now=int(time.time()) + 5)
        if outcomes and outcomes[0].state == "delivered":
            break
    inbox = kg.client().get("/api/v1/inbox", headers=kg.auth()).get_json()["messages"]
    assert [m["envelope_id"] for m in inbox] == [message_id]


def test_peers_serve_earlier_versions_for_the_chain_walk(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    client = kz.client()
    assert client.get("/xb1/trust-list/versions/1").data == fed.trust_wire
    missing = client.get("/xb1/trust-list/versions/2")
    assert missing.status_code == 404 and missing.get_json()["error"] == "not-found"
    assert client.get(f"/xb1/trust-list/versions/{2**40}").status_code == 404


def test_operator_can_follow_a_named_member(make_federation):
    from click.testing import CliRunner

    from gateway.cli import main
    from tests.conftest import PASSPHRASE

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    kz.node.install_trust_list(next_version(fed, kz.node.trust()))
    runner = CliRunner()
    env = {"GATEWAY_KEY_PASSPHRASE": PASSPHRASE}
    result = runner.invoke(
        main, ["--instance", str(kg.instance), "trust", "fetch", "--from", "KZ"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "version 2" in result.output
    again = runner.invoke(
        main, ["--instance", str(kg.instance), "trust", "fetch", "--from", "KZ"], env=env
    )
    assert again.exit_code == 0 and "Nothing newer installed; current version 2." in again.output
    unknown = runner.invoke(
        main, ["--instance", str(kg.instance), "trust", "fetch", "--from", "TJ"], env=env
    )
    assert unknown.exit_code == 2 and "error [unknown-node]" in unknown.output
    for peer in ("", "KG"):  # no member named; this node itself
        named = runner.invoke(
            main, ["--instance", str(kg.instance), "trust", "fetch", "--from", peer], env=env
        )
        assert named.exit_code == 2 and "error [unknown-node]" in named.output, named.output


# --------------------------------------------------------------------------- forged announcements


def _forged(fed, *, sender: str, signing_key: SigningKeyPair, tl: int) -> bytes:
    """An alert to KG that claims ``sender`` and trust list ``tl``, signed with
    ``signing_key`` (which the trust list does not hold for ``sender``)."""
    from gateway.envelope import Recipient, seal

    key = fed["KG"].node.trust().keys.encryption_key("KG", int(time.time()))
    return seal(
        typ="alert/1",
        body=example_alert(),
        sender=sender,
        signing_key=signing_key,
        recipients=[Recipient("KG", key.kid, key.pub)],
        tl=tl,
    ).to_wire()


def test_forged_envelopes_from_strangers_announce_nothing(make_federation):
    """Anyone can write any sender and any ``tl`` into an envelope: before the sender is
    authenticated, only a member's unknown key counts as a sign of a newer list."""
    from gateway.inbox import receive

    fed = make_federation(("KZ", "KG"))
    kg = fed["KG"]
    newer = 5  # a version a node could store
    strangers = [
        _forged(fed, sender=f"ZZ-{i}", signing_key=SigningKeyPair.generate(), tl=newer)
        for i in range(3)
    ]
    wrong_signature = bytearray(
        _forged(fed, sender="KZ", signing_key=fed["KZ"].keys.current_signing, tl=newer)
    )
    wrong_signature[-5] ^= 1  # inside the signature's base64url
    for wire in [*strangers, bytes(wrong_signature)]:
        assert receive(kg.node, wire).status in (400, 401)
    assert hints(kg) == {}


def test_an_announcement_its_sender_does_not_stand_by_is_dropped(make_federation):
    """A forged envelope in a member's name, with a key nobody knows, claims the newest
    possible list: it is noted (a newer list would explain an unknown key), but the
    member's own endpoint serves nothing newer, so the announcement is dropped instead of
    staying behind as an alarm."""
    from gateway.inbox import receive

    fed = make_federation(("KZ", "KG"))
    kg = fed["KG"]
    claimed = 2**31 - 1  # the largest version a node stores
    forged = _forged(fed, sender="KZ", signing_key=SigningKeyPair.generate(), tl=claimed)
    answer = receive(kg.node, forged)
    assert answer.status == 401
    assert hints(kg) == {"KZ": (claimed, None)}
    assert TrustFollower(kg.node).run_once() is None
    assert hints(kg) == {}
    assert kg.node.trust().version == 1


def test_a_version_beyond_any_list_is_not_an_announcement(make_federation):
    """``tl`` may go up to 2^53 - 1, far beyond any list a node could store: the
    envelope is answered as usual, and nothing is noted."""
    fed = make_federation(("KZ", "KG"))
    kg = fed["KG"]
    key = kg.node.trust().keys.encryption_key("KG", int(time.time()))
    from gateway.envelope import Recipient, seal
    from gateway.inbox import receive

    wire = seal(
        typ="alert/1",
        body=example_alert(),
        sender="KZ",
        signing_key=fed["KZ"].keys.current_signing,
        recipients=[Recipient("KG", key.kid, key.pub)],
        tl=2**31,
    ).to_wire()
    assert receive(kg.node, wire).status == 200
    assert hints(kg) == {}


def test_a_revocation_inside_a_chain_holds_what_its_key_signed(make_federation):
    """Installing N+1 and N+2 at once holds what N+1 revokes, even when N+2 no longer
    lists the revoked key, as installing them one by one does."""
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg, uz = fed["KZ"], fed["KG"], fed["UZ"]
    submit(kz, ["KG", "UZ"])  # unread at KG and UZ, signed with KZ's current key
    assert {o.state for o in Dispatcher(kz.node).run_once()} == {"delivered"}
    now = int(time.time())
    new = SigningKeyPair(b"n" * 32)
    enc = key_entry(kz.keys.current_encryption.public, "enc")
    revoked = key_entry(
        kz.keys.current_signing.public,
        "sig",
        not_before=now - 3600,
        not_after=now + 86400,
        status="revoked",
        revoked_at=now - 5,
    )
    v1 = kg.node.trust()
    w2 = next_version(fed, v1, node_keys={"KZ": [revoked, key_entry(new.public, "sig"), enc]})
    w3 = next_version(
        fed, v1.verify_successor(w2, now), node_keys={"KZ": [key_entry(new.public, "sig"), enc]}
    )
    kg.node.install_trust_chain([w2, w3])
    uz.node.install_trust_list(w2)
    uz.node.install_trust_list(w3)
    for member in (kg, uz):
        with member.node.sessions() as session:
            [message] = session.scalars(select(InboundMessage)).all()
            assert message.held, member.node.id
            assert "revoked in trust list version 2" in message.quarantine_reason
