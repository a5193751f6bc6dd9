"""A node's key ring: generation, deterministic fixtures, rotation, sealed storage."""

import json
from pathlib import Path
from typing import Any

import pytest

from keys.keypair import EncryptionKeyPair, SigningKeyPair
from keys.nodekeys import NodeKeys, RingKey, passphrase_from_env
from keys.sealed import MEMLIMIT_MIN, OPSLIMIT_MIN, KeyFileError, UnsealedKeyWarning
from keys.trustlist import TrustedKeys
from schemas.b64 import b64e

FAST: dict[str, Any] = {"opslimit": OPSLIMIT_MIN, "memlimit": MEMLIMIT_MIN}
DE = NodeKeys.deterministic("DE", b"fixture seed", created=1_700_000_000)


def test_generate_has_one_sig_and_one_enc_key() -> None:
    ring = NodeKeys.generate("FR-BKA", now=123)
    assert ring.node == "FR-BKA"
    assert len(ring.signing) == 1 and len(ring.encryption) == 1
    assert ring.signing[0].created == 123 and ring.signing[0].status == "active"
    assert ring.current_signing.kid == ring.signing[0].kid
    enc = ring.encryption_keys[0]
    assert ring.encryption_key(enc.kid) is enc and ring.current_encryption is enc
    assert ring.encryption_key(ring.current_signing.kid) is None
    assert ring.signing_key(ring.current_signing.kid) is ring.current_signing
    assert NodeKeys.generate("FR-BKA").current_signing.kid != ring.current_signing.kid


def test_deterministic_keys_are_reproducible_and_domain_separated() -> None:
    again = NodeKeys.deterministic("DE", b"fixture seed", created=1_700_000_000)
    assert again == DE and again.to_secret_json() == DE.to_secret_json()
    other_node = NodeKeys.deterministic("FR", b"fixture seed")
    other_seed = NodeKeys.deterministic("DE", b"fixture seed!")
    kids = {r.current_signing.kid for r in (DE, other_node, other_seed)}
    assert len(kids) == 3
    assert DE.current_signing.public != DE.current_encryption.public


def test_deterministic_known_answer() -> None:
    # Regression vector: changing the derivation breaks every published fixture.
    ring = NodeKeys.deterministic("DE", b"x")
    assert ring.current_signing.kid == "76137949a1f1076a41ea9b39e844941e"
    assert ring.current_encryption.kid == "2b6b4a97b978749abeec1f0585ec5014"


def test_secret_json_round_trip() -> None:
    obj = DE.to_secret_json()
    assert set(obj) == {"node", "sig", "enc"}
    assert NodeKeys.from_secret_json(json.loads(json.dumps(obj))) == DE


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda o: o["sig"][0].update(kid="0" * 32), id="kid-mismatch"),
        pytest.param(lambda o: o["enc"][0].update(secret=b64e(bytes(31))), id="short-secret"),
        pytest.param(lambda o: o["sig"][0].update(status="revoked"), id="bad-status"),
        pytest.param(lambda o: o["sig"][0].update(created="now"), id="bad-created"),
        pytest.param(lambda o: o.update(node="germany"), id="bad-node"),
        pytest.param(lambda o: o.update(extra=1), id="extra-member"),
        pytest.param(lambda o: o.update(sig=[]), id="no-signing-key"),
        pytest.param(lambda o: o["enc"][0].update(status="retired"), id="no-active-enc"),
        pytest.param(lambda o: o.update(enc=o["enc"] * 2), id="duplicate-key"),
        pytest.param(lambda o: o["enc"][0].pop("kid"), id="missing-kid"),
    ],
)
def test_from_secret_json_refuses_bad_rings(edit: Any) -> None:
    obj = DE.to_secret_json()
    edit(obj)
    with pytest.raises(KeyFileError) as e:
        NodeKeys.from_secret_json(obj)
    assert e.value.code == "key-file-malformed"


def test_invariants() -> None:
    sig = RingKey(SigningKeyPair.generate(), 0)
    enc = RingKey(EncryptionKeyPair.generate(), 0)
    with pytest.raises(ValueError):
        NodeKeys("DE", (sig, RingKey(SigningKeyPair.generate(), 0)), (enc,))  # two active
    with pytest.raises(ValueError):
        NodeKeys("DE", (), (enc,))
    with pytest.raises(TypeError):
        NodeKeys("DE", (enc,), (enc,))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RingKey(sig.pair, 0, "revoked")  # type: ignore[arg-type]


def test_rotation_keeps_old_encryption_keys_for_overlap() -> None:
    old_enc, old_sig = DE.current_encryption, DE.current_signing
    rotated = DE.rotate_encryption(now=10).rotate_signing(now=11)
    assert rotated.current_encryption.kid != old_enc.kid
    assert rotated.current_signing.kid != old_sig.kid
    assert rotated.encryption_key(old_enc.kid) is old_enc  # still opens old messages
    assert rotated.signing_key(old_sig.kid) is old_sig
    assert [k.status for k in rotated.encryption] == ["retired", "active"]
    assert [k.status for k in rotated.signing] == ["retired", "active"]
    assert len(rotated.encryption_keys) == 2
    assert DE.current_encryption is old_enc  # the original ring is unchanged


def test_save_load_sealed(tmp_path: Path) -> None:
    path = tmp_path / "DE.key"
    ring = DE.rotate_encryption(now=5)
    ring.save(path, "pass phrase", **FAST)
    assert NodeKeys.load(path, "pass phrase") == ring
    with pytest.raises(KeyFileError) as e:
        NodeKeys.load(path, "wrong")
    assert e.value.code == "key-file-passphrase"
    assert ring.current_signing.seed.hex() not in path.read_text()


def test_save_unsealed_needs_flag_and_warns_on_load(tmp_path: Path) -> None:
    path = tmp_path / "demo.key"
    with pytest.raises(ValueError):
        DE.save(path, None)
    DE.save(path, None, unsafe_unsealed=True)
    with pytest.warns(UnsealedKeyWarning):
        assert NodeKeys.load(path, None) == DE


def test_repr_does_not_leak_secrets() -> None:
    text = repr(DE)
    obj = DE.to_secret_json()
    assert obj["sig"][0]["seed"] not in text and obj["enc"][0]["secret"] not in text
    assert DE.current_signing.kid in text


def test_passphrase_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_KEY_PASSPHRASE", raising=False)
    assert passphrase_from_env() is None
    monkeypatch.setenv("GATEWAY_KEY_PASSPHRASE", "")
    assert passphrase_from_env() is None
    monkeypatch.setenv("GATEWAY_KEY_PASSPHRASE", "s3cret words")
    assert passphrase_from_env() == "s3cret words"
    monkeypatch.setenv("OTHER_VAR", "x")
    assert passphrase_from_env("OTHER_VAR") == "x"


def _listed(*entries: tuple[Any, ...]) -> TrustedKeys:
    """A trust list's keys from (node, pair, use, status[, other key fields]) tuples."""
    return TrustedKeys.from_entries(
        [
            {
                "node": node,
                "kid": pair.kid,
                "pub": b64e(pair.public),
                "use": use,
                "status": status,
                **(more[0] if more else {}),
            }
            for node, pair, use, status, *more in entries
        ]
    )


def test_listing_problems_compare_the_ring_with_its_trust_list_entry() -> None:
    other = NodeKeys.deterministic("DE", b"another seed")
    listed = _listed(
        ("DE", DE.current_signing, "sig", "active"), ("DE", DE.current_encryption, "enc", "active")
    )
    assert DE.listing_problems(listed, now=1_800_000_000) == []
    # A ring the entry was not built from: both directions broken, each key named.
    signing, encryption = other.listing_problems(listed, now=1_800_000_000)
    assert "no signing key of the key file" in signing and "unknown-sender" in signing
    assert "backup" in signing and "backup" in encryption
    assert other.current_signing.kid in signing and DE.current_signing.kid in signing
    assert f"peers encrypt to {DE.current_encryption.kid}" in encryption
    assert other.current_encryption.kid in encryption
    # Only the encryption key differs.
    half = _listed(
        ("DE", DE.current_signing, "sig", "active"),
        ("DE", other.current_encryption, "enc", "active"),
    )
    (only,) = DE.listing_problems(half, now=1_800_000_000)
    assert only.startswith(f"peers encrypt to {other.current_encryption.kid}")
    # The listed signing key revoked: nothing this ring signs is accepted, and the fault
    # is the list's state, not another key file.
    revoked = _listed(
        ("DE", DE.current_signing, "sig", "revoked"), ("DE", DE.current_encryption, "enc", "active")
    )
    (only,) = DE.listing_problems(revoked, now=1_800_000_000)
    assert only.startswith("the trust list has this node's signing key but not as usable")
    assert f"{DE.current_signing.kid} revoked" in only and "key-not-valid" in only
    assert "backup" not in only and "administrators" in only
    # No usable encryption key for the node at all (its one retired).
    no_enc = _listed(
        ("DE", DE.current_signing, "sig", "active"), ("DE", DE.current_encryption, "enc", "retired")
    )
    (only,) = DE.listing_problems(no_enc, now=1_800_000_000)
    assert "no usable encryption key" in only
    assert f"{DE.current_encryption.kid} retired, valid" in only and "backup" not in only
    only_sig = _listed(("DE", DE.current_signing, "sig", "active"))
    (only,) = DE.listing_problems(only_sig, now=1_800_000_000)
    assert "(none listed)" in only
    # A list that does not name the node is for the caller to say.
    assert DE.listing_problems(_listed(("FR", other.current_signing, "sig", "active")), 0) == []


def test_listing_problems_say_why_a_listed_signing_key_is_not_usable() -> None:
    enc = ("DE", DE.current_encryption, "enc", "active")
    sig = DE.current_signing
    now = 1_800_000_000
    retired = _listed(("DE", sig, "sig", "retired", {"not_before": 10, "not_after": now - 5}), enc)
    (only,) = DE.listing_problems(retired, now=now)
    assert f"({sig.kid} retired, valid 10 to {now - 5} (Unix seconds))" in only
    revoked = _listed(("DE", sig, "sig", "revoked", {"revoked_at": now - 60}), enc)
    (only,) = DE.listing_problems(revoked, now=now)
    assert f"{sig.kid} revoked at {now - 60}, valid" in only
    # The signing key listed as an encryption key: not a signing key of the node at all.
    as_enc = _listed(("DE", sig, "enc", "active"), enc)
    problems = DE.listing_problems(as_enc, now=now)
    assert problems[0].startswith("no signing key of the key file") and "backup" in problems[0]


def test_listing_problems_accept_a_rotation_the_list_has_not_caught_up_with() -> None:
    # Rotated on the ring while the list still carries the previous keys: the retired
    # encryption key still opens what peers seal to it, the retired signing key still
    # signs (gateway.node.Node.signing_pair picks it): not a problem.
    listed = _listed(
        ("DE", DE.current_signing, "sig", "active"), ("DE", DE.current_encryption, "enc", "active")
    )
    rotated = DE.rotate_encryption(now=10).rotate_signing(now=11)
    assert rotated.listing_problems(listed, now=1_800_000_000) == []
