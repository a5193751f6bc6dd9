"""How a node installs, stores and reloads its trust list (PROTOCOL §5)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import time

import pytest
from sqlalchemy import delete, update

from gateway.config import load_settings
from gateway.errors import NodeStateError
from gateway.models import TrustListVersion
from gateway.node import Node
from keys.keypair import SigningKeyPair
from keys.trustlist import (
    TrustError,
    TrustList,
    admin_entry,
    assemble,
    build_list,
    sign_list,
)


def successor(fed, current: TrustList, *, expires_in: int = 86400, issued_at=None) -> bytes:
    now = int(time.time())
    raw = build_list(
        federation=current.federation,
        version=current.version + 1,
        issued_at=issued_at or now,
        expires=now + expires_in,
        prev=current.sha256,
        threshold=current.threshold,
        admins=[{"kid": a.kid, "pub": _b64(a.pub), "label": a.label} for a in current.admins],
        nodes=[
            {
                "node": n.node,
                "name": n.name,
                "endpoint": n.endpoint,
                "keys": [k.to_entry() for k in n.keys],
            }
            for n in current.nodes
        ],
    )
    return assemble(raw, [sign_list(raw, admin) for admin in fed.admins[:2]])


def test_a_chain_whose_last_version_is_dated_ahead_installs_the_versions_before_it(
    make_federation,
):
    """Following a peer several versions ahead: version 2 (say, a revocation) must not
    wait for the date of a version 3 issued days ahead by a wrong clock (T10); version 3
    is refused, and left for a later try; version 2 alone then is in force."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    v1 = kz.node.trust()
    v2_wire = successor(fed, v1)
    v2 = v1.verify_successor(v2_wire, int(time.time()))
    ahead = successor(fed, v2, issued_at=int(time.time()) + 3 * 86400, expires_in=10 * 86400)
    installed = kz.node.install_trust_chain([v2_wire, ahead])
    assert installed.version == 2 and kz.node.trust().version == 2
    with pytest.raises(TrustError) as refused:
        kz.node.install_trust_chain([ahead])
    assert refused.value.code == "trust-time"


def rogue_version_1(
    current: TrustList, *, endpoint: str | None = None, after: TrustList | None = None
) -> bytes:
    """A self-consistent version 1 (or, ``after`` a version, its successor) signed by an
    administrator of no federation, listing the nodes of ``current`` with their keys
    (at ``endpoint``, if given)."""
    rogue = SigningKeyPair(b"r" * 32)
    now = int(time.time())
    raw = build_list(
        federation=current.federation,
        version=1 if after is None else after.version + 1,
        issued_at=now,
        expires=now + 86400,
        prev=None if after is None else after.sha256,
        threshold=1,
        admins=[admin_entry(rogue, "rogue")],
        nodes=[
            {
                "node": n.node,
                "name": n.name,
                "endpoint": endpoint or n.endpoint,
                "keys": [k.to_entry() for k in n.keys],
            }
            for n in current.nodes
        ],
    )
    return assemble(raw, [sign_list(raw, rogue)])


def _b64(raw: bytes) -> str:
    from schemas.b64 import b64e

    return b64e(raw)


def reopened(member) -> Node:
    return Node(load_settings(member.instance), keys=member.keys)


def _stale(member) -> Node:
    """Another process of ``member``'s node that read its trust list a moment ago (and
    would read it again only after ``trust_refresh``)."""
    other = reopened(member)
    other.settings = dataclasses.replace(other.settings, trust_refresh=300.0)
    other.trust()
    return other


def test_a_version_another_process_installed_first_counts_as_installed(make_federation):
    """Two dispatchers follow the same announcement, or an operator installs what a
    dispatcher just fetched: the second insert of a version must not end in a database
    error (it stopped the dispatcher); the same list is simply in force. A different
    list of the same version is refused."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    by_chain, by_command, by_other = _stale(kz), _stale(kz), _stale(kz)
    v1 = kz.node.trust()
    v2 = successor(fed, v1)
    installed = kz.node.install_trust_list(v2)
    assert by_chain.install_trust_chain([v2]).sha256 == installed.sha256
    assert by_chain.trust().version == 2
    # A command checks against the newest stored version, not what it read before.
    with pytest.raises(TrustError) as again:
        by_command.install_trust_list(v2)
    assert again.value.code == "trust-rollback" and by_command.trust().version == 2
    with pytest.raises(TrustError) as other:
        by_other.install_trust_chain([successor(fed, v1, issued_at=int(time.time()) - 60)])
    assert other.value.code == "trust-chain"
    assert "installed meanwhile" in other.value.message
    with kz.node.sessions() as session:
        assert session.query(TrustListVersion).count() == 2
    for node in (by_chain, by_command, by_other):
        node.engine.dispose()


def test_a_chain_whose_first_version_another_process_installed_installs_the_rest(
    make_federation,
):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    following = _stale(kz)
    v2 = successor(fed, kz.node.trust())
    kz.node.install_trust_list(v2)
    v3 = successor(fed, kz.node.trust())
    installed = following.install_trust_chain([v2, v3])
    assert installed.version == following.trust().version == 3
    with kz.node.sessions() as session:
        assert session.query(TrustListVersion).count() == 3
    following.engine.dispose()


def test_a_command_racing_another_install_of_the_same_version_counts_it_installed(
    make_federation, monkeypatch
):
    """Both read version 1 as the newest, both verify version 2: the second to store it
    meets the first's row, and takes it as installed when it is the same list."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    racing = _stale(kz)
    v2 = successor(fed, kz.node.trust())
    verify = TrustList.verify_successor

    def verify_while_the_other_installs(self, wire, now):
        verified = verify(self, wire, now)
        monkeypatch.undo()
        kz.node.install_trust_list(v2)  # the other process commits meanwhile
        return verified

    monkeypatch.setattr(TrustList, "verify_successor", verify_while_the_other_installs)
    assert racing.install_trust_list(v2).version == 2
    with kz.node.sessions() as session:
        assert session.query(TrustListVersion).count() == 2
    racing.engine.dispose()


def test_successor_is_installed_and_the_chain_reloads(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    v2 = kz.node.install_trust_list(successor(fed, kz.node.trust()))
    assert v2.version == 2 and kz.node.trust().version == 2
    assert kz.client().get("/xb1/trust-list").data == v2.to_wire()
    fresh = reopened(kz)
    assert fresh.trust().version == 2 and fresh.trust().sha256 == v2.sha256
    fresh.engine.dispose()


def test_rollback_and_unsigned_lists_are_refused(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    with pytest.raises(TrustError) as refused:
        kz.node.install_trust_list(fed.trust_wire)
    assert refused.value.code == "trust-rollback"
    wire = successor(fed, kz.node.trust())
    from schemas import xb1json

    unsigned = xb1json.dumps({**xb1json.loads(wire), "signatures": []})
    with pytest.raises(TrustError) as refused:
        kz.node.install_trust_list(unsigned)
    assert refused.value.code == "trust-threshold"
    assert kz.node.trust().version == 1


def test_version_1_installed_again_after_every_version_was_deleted_is_a_rollback(
    make_federation,
):
    """Every stored version deleted, then version 1 installed again (the anchor file at
    hand): the node must not run on it, as the keys version 2 revoked would be usable
    again. The install is refused, and a fresh process refuses to run too."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    kz.node.install_trust_list(successor(fed, kz.node.trust()))
    with kz.node.sessions() as session:
        session.execute(delete(TrustListVersion))
        session.commit()
    fresh = reopened(kz)
    with pytest.raises(NodeStateError, match="version 2 was installed") as refused:
        fresh.install_trust_list(fed.trust_wire)
    assert refused.value.code == "trust-rollback"
    with fresh.sessions() as session:
        assert session.query(TrustListVersion).count() == 0
    # Were version 1 stored again all the same (by hand), the node still refuses to
    # run on it: the audit log names version 2, whatever entry came last.
    from gateway.audit import log as audit

    now = int(time.time())
    version_1 = TrustList.from_anchor(
        fed.trust_wire, bytes.fromhex(fresh.settings.trust_anchor), now
    )
    with fresh.sessions() as session:
        audit.lock(session)
        fresh._store(session, [version_1], now)  # with its own trust-list-installed entry
        session.commit()
    again = reopened(kz)
    with pytest.raises(NodeStateError, match="version 2 was installed") as refused:
        again.trust()
    assert refused.value.code == "trust-rollback"
    for node in (fresh, again):
        node.engine.dispose()


def test_a_later_version_edited_in_the_database_is_not_trusted(make_federation):
    """Someone with database access replaces the stored version 2 by one of their own
    (their admin only, a matching stored hash): a process loading the stored lists
    verifies each from version 1 with both thresholds, and refuses it."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    v1 = kz.node.trust()
    kz.node.install_trust_list(successor(fed, v1))
    forged = rogue_version_1(v1, endpoint="http://127.0.0.1:9", after=v1)
    with kz.node.sessions() as session:
        session.execute(
            update(TrustListVersion)
            .where(TrustListVersion.version == 2)
            .values(wire=forged, sha256=hashlib.sha256(_signed_part(forged)).digest())
        )
        session.commit()
    fresh = reopened(kz)
    with pytest.raises(NodeStateError) as refused:
        fresh.trust()
    assert refused.value.code == "trust-threshold", refused.value.message
    fresh.engine.dispose()


def test_a_chain_followed_may_pass_an_expired_version_but_not_end_on_one(make_federation):
    """Following peers installs N+1 … N+k at once: a version in between may have expired
    since (it was superseded), the newest may not (nothing would be sent under it)."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    v1 = kz.node.trust()
    later = int(time.time()) + 3 * 86400  # when the chain is followed
    v2 = successor(fed, v1, expires_in=86400)
    v2_list = TrustList.from_pinned(v2, hashlib.sha256(_signed_part(v2)).digest())
    v3 = successor(fed, v2_list, expires_in=2 * 86400)
    with pytest.raises(TrustError) as refused:
        kz.node.install_trust_chain([v2, v3], now=later)
    assert refused.value.code == "trust-expired"
    assert kz.node.trust().version == 1
    v3_list = TrustList.from_pinned(v3, hashlib.sha256(_signed_part(v3)).digest())
    v4 = successor(fed, v3_list, expires_in=10 * 86400)
    assert kz.node.install_trust_chain([v2, v3, v4], now=later).version == 4


def _signed_part(wire: bytes) -> bytes:
    """L, the signed bytes of a trust list's wire form."""
    return base64.urlsafe_b64decode(json.loads(wire)["list"] + "==")


def test_a_trust_list_edited_in_the_database_is_not_trusted(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    # Someone with database access swaps version 1 for a self-consistent list of their
    # own (their admin, their keys for KG) and updates the stored hash (of L) to match:
    # only the configured anchor can tell.
    forged = rogue_version_1(kz.node.trust(), endpoint="http://127.0.0.1:9")
    signed = _signed_part(forged)
    with kz.node.sessions() as session:
        session.execute(
            update(TrustListVersion).values(wire=forged, sha256=hashlib.sha256(signed).digest())
        )
        session.commit()
    fresh = reopened(kz)
    with pytest.raises(NodeStateError) as refused:
        fresh.trust()
    assert refused.value.code == "trust-anchor-mismatch"
    fresh.engine.dispose()


def test_an_expired_list_freezes_sending_and_readiness_reports_it(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    # Version 2 expires a few seconds from now (time enough to install it and submit
    # on a loaded machine); once it has, the node still loads it.
    kz.node.install_trust_list(successor(fed, kz.node.trust(), expires_in=5))
    assert kz.node.trust().version == 2  # else the sleep below would be version 1's
    expires = kz.node.trust().expires
    from schemas.examples import example_alert

    queued = kz.client().post(
        "/api/v1/messages",
        headers=kz.auth(),
        json={"typ": "alert/1", "body": example_alert(), "to": ["KG"]},
    )
    assert queued.status_code == 202
    time.sleep(max(0.0, expires - time.time()) + 0.1)
    fresh = reopened(kz)
    assert fresh.trust().version == 2
    from gateway.dispatcher import Dispatcher

    [outcome] = Dispatcher(fresh).run_once()
    assert (outcome.state, outcome.code) == ("retrying", "trust-list-expired")
    assert fed["KG"].posts == []
    from gateway.app import create_app

    ready = create_app(node=fresh).test_client().get("/readyz")
    assert ready.status_code == 503
    assert [a["code"] for a in ready.get_json()["alarms"]] == ["trust-list-expired"]
    # What else is wrong is said beside it: a peer uses a newer version that the node
    # could not follow (often why its list expired).
    from gateway.models import TrustHint
    from gateway.trust_sync import note_announcement

    note_announcement(fresh, "KG", 3, int(time.time()))
    with fresh.sessions() as session:
        session.get(TrustHint, "KG").last_error = "connection refused"
        session.commit()
    ready = create_app(node=fresh).test_client().get("/readyz")
    codes = [a["code"] for a in ready.get_json()["alarms"]]
    assert codes == ["trust-list-expired", "trust-list-behind"]
    answer = (
        create_app(node=fresh)
        .test_client()
        .post(
            "/api/v1/messages", headers=kz.auth(), json={"typ": "alert/1", "body": {}, "to": ["KG"]}
        )
    )
    assert answer.status_code == 422  # the body is checked first
    answer = (
        create_app(node=fresh)
        .test_client()
        .post(
            "/api/v1/messages",
            headers=kz.auth(),
            json={"typ": "alert/1", "body": example_alert(), "to": ["KG"]},
        )
    )
    assert answer.status_code == 503 and answer.get_json()["error"] == "trust-list-expired"
    fresh.engine.dispose()


def test_an_expired_list_is_logged_as_an_alarm(make_federation, caplog):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    expired_at = kz.node.trust().expires + 1
    for _ in range(3):
        with pytest.raises(NodeStateError):
            kz.node.require_sending_allowed(expired_at)
    alarms = [r for r in caplog.records if "ALARM [trust-list-expired]" in r.getMessage()]
    assert len(alarms) == 1 and alarms[0].levelname == "ERROR"  # once, not per delivery


def test_deleting_the_newest_installed_version_is_a_rollback_not_an_older_list(
    make_federation,
):
    """A stored version deleted from the database would put an older list, in which
    a since-revoked key is usable again, back in force: the node refuses to run on it,
    in the process that had the newer one and in a fresh one (the audit log names the
    installed version)."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    kz.node.install_trust_list(successor(fed, kz.node.trust()))
    assert kz.node.trust().version == 2
    with kz.node.sessions() as session:
        session.execute(delete(TrustListVersion).where(TrustListVersion.version == 2))
        session.commit()
    fresh = reopened(kz)
    for node in (kz.node, fresh):
        node._trust_checked_at = float("-inf")  # whatever trust_refresh says
        with pytest.raises(NodeStateError, match="version 2 was installed") as refused:
            node.trust()
        assert refused.value.code == "trust-rollback"
    fresh.engine.dispose()


def test_keys_that_do_not_load_are_a_readiness_alarm_not_an_error(make_federation):
    from gateway.app import create_app
    from keys.sealed import KeyFileError

    fed = make_federation(("KZ", "KG"), serve=False)

    def no_keys():
        raise KeyFileError("key-file-passphrase", "wrong passphrase, or the key file was edited")

    node = Node(load_settings(fed["KZ"].instance), keys=no_keys)
    try:
        ready = create_app(node=node).test_client().get("/readyz")
    finally:
        node.engine.dispose()
    assert ready.status_code == 503
    assert ready.get_json()["alarms"] == [
        {"code": "key-file-passphrase", "message": "wrong passphrase, or the key file was edited"}
    ]
