"""Private keys sealed at rest: argon2id + XChaCha20-Poly1305, header as associated data."""

import json
import os
import stat
import warnings
from pathlib import Path
from typing import Any

import pytest

import keys.sealed
from keys.sealed import (
    FORMAT,
    MEMLIMIT_INTERACTIVE,
    MEMLIMIT_MIN,
    OPSLIMIT_INTERACTIVE,
    OPSLIMIT_MIN,
    KeyFileError,
    UnsealedKeyWarning,
    WeakKeyFileWarning,
    open_keys,
    read_key_file,
    seal_keys,
    write_key_file,
)
from schemas.b64 import b64d, b64e

FAST: dict[str, Any] = {"opslimit": OPSLIMIT_MIN, "memlimit": MEMLIMIT_MIN}
SECRET = {"node": "DE", "sig": [{"seed": b64e(bytes(range(32)))}], "note": "ünïcode"}
PASS = "correct horse battery staple"  # noqa: S105 - test passphrase


def sealed_doc(**kdf: Any) -> dict[str, Any]:
    return json.loads(seal_keys(SECRET, PASS, **(FAST | kdf)))


def reopen(doc: dict[str, Any], passphrase: str | None = PASS) -> dict[str, Any]:
    return open_keys(json.dumps(doc).encode(), passphrase)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, SECRET, PASS, **FAST)
    assert read_key_file(path, PASS) == SECRET
    doc = json.loads(path.read_bytes())
    assert doc["format"] == FORMAT and doc["sealed"] is True
    assert doc["kdf"]["alg"] == "argon2id" and doc["kdf"]["opslimit"] == OPSLIMIT_MIN
    assert len(b64d(doc["kdf"]["salt"])) == 16 and len(b64d(doc["nonce"])) == 24
    assert b"seed" not in path.read_bytes()  # the secret is not in clear


def test_round_trip_interactive_limits(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, SECRET, PASS, opslimit=OPSLIMIT_INTERACTIVE, memlimit=MEMLIMIT_INTERACTIVE)
    assert read_key_file(path, PASS) == SECRET


def test_fresh_salt_and_nonce_each_time() -> None:
    a, b = sealed_doc(), sealed_doc()
    assert a["kdf"]["salt"] != b["kdf"]["salt"] and a["nonce"] != b["nonce"]


def test_passphrase_is_nfc_normalised() -> None:
    data = seal_keys(SECRET, "caf\u00e9", **FAST)
    assert open_keys(data, "cafe\u0301") == SECRET


@pytest.mark.parametrize("passphrase", ["wrong", PASS + " ", PASS.upper()])
def test_wrong_passphrase(passphrase: str) -> None:
    with pytest.raises(KeyFileError) as e:
        reopen(sealed_doc(), passphrase)
    assert e.value.code == "key-file-passphrase"


def test_missing_passphrase_for_sealed_file() -> None:
    for passphrase in (None, ""):
        with pytest.raises(KeyFileError) as e:
            reopen(sealed_doc(), passphrase)
        assert e.value.code == "key-file-passphrase"


def test_sealing_needs_a_passphrase() -> None:
    with pytest.raises(ValueError):
        seal_keys(SECRET, "", **FAST)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda d: d["kdf"].update(salt=b64e(bytes(16))), id="salt"),
        pytest.param(lambda d: d["kdf"].update(opslimit=OPSLIMIT_MIN + 1), id="opslimit"),
        pytest.param(lambda d: d["kdf"].update(memlimit=MEMLIMIT_MIN * 2), id="memlimit"),
        pytest.param(lambda d: d.update(nonce=b64e(bytes(24))), id="nonce"),
    ],
)
def test_header_tampering_fails(edit: Any) -> None:
    doc = sealed_doc()
    edit(doc)
    with pytest.raises(KeyFileError) as e:
        reopen(doc)
    assert e.value.code == "key-file-passphrase"


def test_associated_data_is_checked_by_the_aead() -> None:
    """Decrypting with the right key but another header must fail (header is the AAD)."""
    import nacl.bindings
    import nacl.exceptions
    import nacl.pwhash.argon2id as argon2id

    doc = sealed_doc()
    key = argon2id.kdf(32, PASS.encode(), b64d(doc["kdf"]["salt"]), **FAST)
    header = {"format": FORMAT, "sealed": True, "kdf": doc["kdf"]}
    aad = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    args = (b64d(doc["ciphertext"]), aad, b64d(doc["nonce"]), key)
    assert json.loads(nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(*args)) == SECRET
    with pytest.raises(nacl.exceptions.CryptoError):
        nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            args[0], aad.replace(b"xb1-keyfile/1", b"xb1-keyfile/2"), *args[2:]
        )


def test_ciphertext_tampering_fails() -> None:
    doc = sealed_doc()
    ct = bytearray(b64d(doc["ciphertext"]))
    for index in (0, len(ct) // 2, len(ct) - 1):
        tampered = bytearray(ct)
        tampered[index] ^= 1
        with pytest.raises(KeyFileError) as e:
            reopen(doc | {"ciphertext": b64e(bytes(tampered))})
        assert e.value.code == "key-file-passphrase"
    with pytest.raises(KeyFileError):
        reopen(doc | {"ciphertext": b64e(bytes(ct[:-1]))})
    for short in (b"", b"\x00" * 3, ct[:15]):  # shorter than the tag: malformed, no crash
        with pytest.raises(KeyFileError) as e:
            reopen(doc | {"ciphertext": b64e(short)})
        assert e.value.code == "key-file-malformed"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        json.dumps({"format": "other", "sealed": True}).encode(),
        json.dumps({"format": FORMAT}).encode(),
        json.dumps({"format": FORMAT, "sealed": "yes"}).encode(),
        json.dumps({"format": FORMAT, "sealed": False, "keys": []}).encode(),
        json.dumps({"format": FORMAT, "sealed": False, "keys": {}, "extra": 1}).encode(),
    ],
)
def test_corrupt_file_is_malformed(data: bytes) -> None:
    with pytest.raises(KeyFileError) as e:
        open_keys(data, PASS)
    assert e.value.code == "key-file-malformed"


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda d: d["kdf"].update(alg="scrypt"), id="alg"),
        pytest.param(lambda d: d["kdf"].update(memlimit=2**40), id="huge-memlimit"),
        # Hours of key derivation at every start, from a file anyone could have edited.
        pytest.param(lambda d: d["kdf"].update(opslimit=2**32 - 1), id="huge-opslimit"),
        pytest.param(lambda d: d["kdf"].update(opslimit=17), id="opslimit-over-bound"),
        pytest.param(lambda d: d["kdf"].update(opslimit=0), id="zero-opslimit"),
        pytest.param(lambda d: d["kdf"].update(opslimit=True), id="bool-opslimit"),
        pytest.param(lambda d: d["kdf"].update(salt=b64e(bytes(15))), id="short-salt"),
        pytest.param(lambda d: d.update(nonce=d["nonce"] + "="), id="padded-nonce"),
        pytest.param(lambda d: d.pop("ciphertext"), id="no-ciphertext"),
        pytest.param(lambda d: d.update(keys={}), id="extra-member"),
    ],
)
def test_bad_header_is_malformed(edit: Any) -> None:
    doc = sealed_doc()
    edit(doc)
    with pytest.raises(KeyFileError) as e:
        reopen(doc)
    assert e.value.code == "key-file-malformed"


def test_unsealed_needs_explicit_flag_and_warns(tmp_path: Path) -> None:
    path = tmp_path / "demo.key"
    with pytest.raises(ValueError):
        write_key_file(path, SECRET, None)
    assert not path.exists()
    write_key_file(path, SECRET, None, unsafe_unsealed=True)
    doc = json.loads(path.read_bytes())
    assert doc == {"format": FORMAT, "sealed": False, "keys": SECRET}
    with pytest.warns(UnsealedKeyWarning):
        assert read_key_file(path, None) == SECRET
    with pytest.warns(UnsealedKeyWarning):
        assert read_key_file(path, PASS) == SECRET


def test_passphrase_wins_over_unsafe_flag(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, SECRET, PASS, unsafe_unsealed=True, **FAST)
    assert json.loads(path.read_bytes())["sealed"] is True


def test_file_mode_0600_atomic_replace(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    write_key_file(path, SECRET, PASS, **FAST)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path, PASS) == SECRET
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]  # no temp files left
    write_key_file(tmp_path / "demo.key", SECRET, None, unsafe_unsealed=True)
    assert stat.S_IMODE((tmp_path / "demo.key").stat().st_mode) == 0o600


def test_a_key_file_written_again_keeps_its_owner_and_its_link(tmp_path: Path) -> None:
    """A rotation or a new passphrase run as root for the node's account leaves a file
    that account still owns (so it can read it after a restart), mode 0600, and a link
    to a key file elsewhere stays a link."""
    real = tmp_path / "secrets" / "node.key"
    real.parent.mkdir()
    write_key_file(real, SECRET, PASS, **FAST)
    link = tmp_path / "node-keys.json"
    link.symlink_to(real)
    other = os.geteuid() + 4242 if os.geteuid() == 0 else None
    if other is not None:  # only root may give a file away; the suite runs as root in CI
        os.chown(real, other, other)
    write_key_file(link, {**SECRET, "note": "rotated"}, PASS, **FAST)
    assert link.is_symlink() and link.resolve() == real
    assert read_key_file(link, PASS)["note"] == "rotated"
    status = real.stat()
    assert stat.S_IMODE(status.st_mode) == 0o600
    if other is not None:
        assert (status.st_uid, status.st_gid) == (other, other)
    assert sorted(p.name for p in real.parent.iterdir()) == ["node.key"]


@pytest.mark.parametrize("dangling", [False, True])
def test_a_link_another_account_made_is_not_followed(
    tmp_path: Path, monkeypatch, dangling: bool
) -> None:
    """The node's account can write its own folder: a key file it replaced with a link
    to a system file (or to where none is yet) must not lead a rotation run by another
    account (root) to write there. The link is refused and left as it was."""
    victim = tmp_path / "etc" / "passwd"
    victim.parent.mkdir()
    if not dangling:
        victim.write_text("root:x:0:0\n")
    link = tmp_path / "node-keys.json"
    link.symlink_to(victim)
    if os.geteuid() == 0:  # root (the suite in CI) runs it; the link is the node account's
        os.lchown(link, 4242, 4242)
    else:  # the link is this account's; the caller is taken for another, not root
        made_by = os.lstat(link).st_uid
        monkeypatch.setattr(keys.sealed.os, "geteuid", lambda: made_by + 1)
    with pytest.raises(PermissionError, match="symbolic link of another account") as refused:
        write_key_file(link, SECRET, PASS, **FAST)
    assert refused.value.filename == str(link)
    assert link.is_symlink()
    if dangling:
        assert not victim.exists()
    else:
        assert victim.read_text() == "root:x:0:0\n"


def test_a_folder_link_another_account_made_is_not_followed_either(
    tmp_path: Path, monkeypatch
) -> None:
    """The node's account turned a folder on the key file's path into a link to another
    node's folder: root's rotation must not write that node's key file."""
    other_node = tmp_path / "node-b"
    other_node.mkdir()
    write_key_file(other_node / "node-keys.json", SECRET, PASS, **FAST)
    before = (other_node / "node-keys.json").read_bytes()
    node_a = tmp_path / "node-a"
    node_a.mkdir()
    (node_a / "keys").symlink_to(other_node)
    if os.geteuid() == 0:
        os.lchown(node_a / "keys", 4242, 4242)
    else:
        made_by = os.lstat(node_a / "keys").st_uid
        monkeypatch.setattr(keys.sealed.os, "geteuid", lambda: made_by + 1)
    with pytest.raises(PermissionError, match="symbolic link of another account") as refused:
        write_key_file(node_a / "keys" / "node-keys.json", {"note": "a's"}, PASS, **FAST)
    assert refused.value.filename == str(node_a / "keys")
    assert (other_node / "node-keys.json").read_bytes() == before


def test_links_are_followed_as_the_kernel_follows_them(tmp_path: Path, monkeypatch) -> None:
    """A link whose text goes through a linked folder and back (sub/..) leads where the
    kernel's lookup leads, not where the text, tidied, would; and a file is written
    once."""
    elsewhere = tmp_path / "elsewhere" / "deep"
    elsewhere.mkdir(parents=True)
    home = tmp_path / "home"
    home.mkdir()
    (home / "sub").symlink_to(elsewhere)
    (home / "node-keys.json").symlink_to("sub/../node.key")
    writes: list[str] = []
    real_write = keys.sealed.atomic_write

    def counted(target: str, data: bytes, *args: Any, **kwargs: Any) -> None:
        writes.append(target)
        real_write(target, data, *args, **kwargs)

    monkeypatch.setattr(keys.sealed, "atomic_write", counted)
    write_key_file(home / "node-keys.json", SECRET, PASS, **FAST)
    assert read_key_file(home / "node-keys.json", PASS) == SECRET  # as the node reads it
    assert writes == [str(tmp_path / "elsewhere" / "node.key")]
    write_key_file(home / "node-keys.json", SECRET, PASS, **FAST)  # written again: once
    assert len(writes) == 2


def test_a_key_file_whose_owner_cannot_be_kept(tmp_path: Path, monkeypatch) -> None:
    """One's own file in a group one is not in is written as one's own; another
    account's file is not taken over (it stays as it was)."""
    path = tmp_path / "node.key"
    write_key_file(path, SECRET, PASS, **FAST)

    def may_not_give_away(fd: int, uid: int, gid: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(keys.sealed.os, "fchown", may_not_give_away)
    write_key_file(path, {**SECRET, "note": "own"}, PASS, **FAST)
    assert read_key_file(path, PASS)["note"] == "own"
    monkeypatch.setattr(keys.sealed.os, "geteuid", lambda: os.stat(path).st_uid + 1)
    with pytest.raises(PermissionError, match="belongs to another account") as refused:
        write_key_file(path, {**SECRET, "note": "taken"}, PASS, **FAST)
    assert refused.value.filename == str(path)
    assert read_key_file(path, PASS)["note"] == "own"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]


def test_failed_write_leaves_old_file(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, SECRET, PASS, **FAST)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_key_file(path, {"bad": 1.5}, PASS, **FAST)  # floats are not xb1-json
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]


def test_a_weakly_sealed_file_opens_with_a_warning(tmp_path: Path, monkeypatch) -> None:
    # The suite lowers the floor for its own fast key files; this test puts it back.
    monkeypatch.setattr(keys.sealed, "WEAK_BELOW", (OPSLIMIT_INTERACTIVE, MEMLIMIT_INTERACTIVE))
    path = tmp_path / "node.key"
    write_key_file(path, SECRET, PASS, **FAST)
    with pytest.warns(WeakKeyFileWarning, match="weak key-derivation settings"):
        assert read_key_file(path, PASS) == SECRET
    with pytest.raises(KeyFileError):  # a wrong passphrase says that, not the warning
        with warnings.catch_warnings():
            warnings.simplefilter("error", WeakKeyFileWarning)
            read_key_file(path, "wrong")
    write_key_file(path, SECRET, PASS, opslimit=OPSLIMIT_INTERACTIVE, memlimit=MEMLIMIT_INTERACTIVE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_key_file(path, PASS) == SECRET


def test_a_passphrase_that_is_not_utf8_text_is_refused_as_such():
    """The environment may hold bytes that are not UTF-8 (Python keeps them as lone
    surrogates): refused with key-file-passphrase, not a UnicodeEncodeError."""
    sealed = seal_keys({"x": 1}, "right words", opslimit=OPSLIMIT_MIN, memlimit=MEMLIMIT_MIN)
    with pytest.raises(KeyFileError) as e:
        open_keys(sealed, "\udcff")
    assert e.value.code == "key-file-passphrase" and "not UTF-8" in e.value.message
