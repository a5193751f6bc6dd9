"""C2SP signed notes, checkpoints and cosignatures.

The signed-note known answer is the example of golang.org/x/mod/sumdb/note
(PeterNeumann key, seed and signature published there); Ed25519 is
deterministic, so our note must match it byte for byte. The cosignature
verifier key is from transparency-dev/formats ``note/note_cosigv1_test.go``.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.note import (
    COSIGNATURE_V1,
    NoteError,
    add_signatures,
    checkpoint_body,
    cosign,
    key_id,
    open_note,
    parse_checkpoint,
    parse_vkey,
    sign_note,
    verify_cosignature,
    vkey,
)
from keys.keypair import SigningKeyPair

GO_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1F"
    "FYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
COSIGNER_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"

LOG = SigningKeyPair(bytes(range(32)))
WITNESS = SigningKeyPair(bytes(range(1, 33)))
OTHER = SigningKeyPair(bytes(range(2, 34)))
ORIGIN = "xb1.example/node-de"
ROOT = hashlib.sha256(b"root").digest()
BODY = checkpoint_body(ORIGIN, 42, ROOT)


def code_of(exc: pytest.ExceptionInfo[NoteError]) -> str:
    return exc.value.code


# -- known answers -----------------------------------------------------------


def test_go_signed_note_known_answer() -> None:
    go = SigningKeyPair(GO_SEED)
    assert sign_note(GO_TEXT, "PeterNeumann", go) == GO_NOTE
    assert vkey("PeterNeumann", go.public) == GO_VKEY
    assert open_note(GO_NOTE, {"PeterNeumann": go.public}) == (GO_TEXT, ["PeterNeumann"])


def test_key_id_is_protocol_section_6() -> None:
    expected = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + LOG.public).digest()[:4]
    assert key_id(ORIGIN, LOG.public) == expected
    assert key_id(ORIGIN, LOG.public, COSIGNATURE_V1) != expected


def test_vkey_round_trip_and_published_cosigner_key() -> None:
    parsed = parse_vkey(GO_VKEY)
    assert (parsed.name, parsed.sig_type, parsed.public) == (
        "PeterNeumann",
        1,
        SigningKeyPair(GO_SEED).public,
    )
    cosigner = parse_vkey(COSIGNER_VKEY)
    assert cosigner.sig_type == COSIGNATURE_V1
    assert vkey(cosigner.name, cosigner.public, COSIGNATURE_V1) == COSIGNER_VKEY


@pytest.mark.parametrize(
    "bad",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # upper hex
        "Peter+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",
        "PeterNeumann+c74f20a3",
        "",
    ],
)
def test_parse_vkey_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_vkey(bad)


# -- checkpoints -------------------------------------------------------------


def test_checkpoint_round_trip() -> None:
    assert BODY == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n"
    assert parse_checkpoint(BODY) == (ORIGIN, 42, ROOT, ())
    with_ext = checkpoint_body(ORIGIN, 0, ROOT, ["ext one", "ext-two"])
    assert parse_checkpoint(with_ext) == (ORIGIN, 0, ROOT, ("ext one", "ext-two"))


B64_ROOT = base64.b64encode(ROOT).decode()
URL_B64_ROOT = base64.urlsafe_b64encode(bytes([0xFF]) * 32).decode()


@pytest.mark.parametrize(
    "body",
    [
        f"{ORIGIN}\n42\n{B64_ROOT}",  # no final newline
        f"{ORIGIN}\n42\n",  # no root line
        f"\n42\n{B64_ROOT}\n",  # empty origin
        f"{ORIGIN}\n042\n{B64_ROOT}\n",  # leading zero
        f"{ORIGIN}\n00\n{B64_ROOT}\n",
        f"{ORIGIN}\n+42\n{B64_ROOT}\n",
        f"{ORIGIN}\n 42\n{B64_ROOT}\n",
        f"{ORIGIN}\n4\u00b2\n{B64_ROOT}\n",  # non-ASCII digit
        f"{ORIGIN}\n\u0664\u0662\n{B64_ROOT}\n",  # Arabic-Indic digits
        f"{ORIGIN}\n-1\n{B64_ROOT}\n",
        f"{ORIGIN}\n{2**63}\n{B64_ROOT}\n",
        f"{ORIGIN}\n42\n{B64_ROOT.rstrip('=')}\n",  # missing padding
        f"{ORIGIN}\n42\n{URL_B64_ROOT}\n",  # url alphabet
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT[:31]).decode()}\n",  # short root
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT + b'x').decode()}\n",  # long root
        f"{ORIGIN}\n42\n{B64_ROOT[:-2]}F=\n",  # non-canonical trailing bits
        f"{ORIGIN}\n42\n{B64_ROOT}\n\n",  # empty extension line
        f"{ORIGIN}\n42\n{B64_ROOT}\r\n",  # control character
    ],
)
def test_parse_checkpoint_is_strict(body: str) -> None:
    with pytest.raises(NoteError) as exc:
        parse_checkpoint(body)
    assert code_of(exc) == "note-malformed"


def test_checkpoint_body_refuses_bad_input() -> None:
    for args in [("", 1, ROOT), (ORIGIN, -1, ROOT), (ORIGIN, 1, ROOT[:31]), ("a\nb", 1, ROOT)]:
        with pytest.raises(ValueError):
            checkpoint_body(*args)
    with pytest.raises(ValueError):
        checkpoint_body(ORIGIN, True, ROOT)


# -- signed notes ------------------------------------------------------------


def test_sign_and_open_round_trip() -> None:
    note = sign_note(BODY, ORIGIN, LOG)
    assert note.startswith(BODY + "\n\u2014 " + ORIGIN + " ")
    assert open_note(note, {ORIGIN: LOG.public}) == (BODY, [ORIGIN])


def test_every_flipped_byte_fails() -> None:
    note = sign_note(BODY, ORIGIN, LOG).encode()
    for i in range(len(note)):
        for bit in (0x01, 0x20):
            altered = bytearray(note)
            altered[i] ^= bit
            try:
                text = altered.decode("utf-8")
            except UnicodeDecodeError:
                continue  # not even text: the HTTP layer refuses it before us
            with pytest.raises(NoteError):
                open_note(text, {ORIGIN: LOG.public})


def test_unknown_signers_are_ignored() -> None:
    note = sign_note(BODY, ORIGIN, LOG)
    other = sign_note(BODY, "someone.else/log", OTHER).split("\n\n")[-1]
    same_name_other_key = sign_note(BODY, ORIGIN, OTHER).split("\n\n")[-1]
    both = add_signatures(note, [other, same_name_other_key])
    assert open_note(both, {ORIGIN: LOG.public}) == (BODY, [ORIGIN])
    # A note signed only by keys we do not know is unverified.
    with pytest.raises(NoteError) as exc:
        open_note(sign_note(BODY, "someone.else/log", OTHER), {ORIGIN: LOG.public})
    assert code_of(exc) == "note-unverified"


def test_several_known_signers() -> None:
    note = add_signatures(
        sign_note(BODY, ORIGIN, LOG), [sign_note(BODY, "b.example", OTHER).split("\n\n")[-1]]
    )
    _, names = open_note(note, {ORIGIN: LOG.public, "b.example": OTHER.public})
    assert names == [ORIGIN, "b.example"]


def test_known_key_with_bad_signature_rejects_the_note() -> None:
    kid = key_id(ORIGIN, LOG.public)
    forged = base64.b64encode(kid + bytes(64)).decode()
    note = add_signatures(sign_note(BODY, ORIGIN, LOG), [f"\u2014 {ORIGIN} {forged}\n"])
    with pytest.raises(NoteError) as exc:
        open_note(note, {ORIGIN: LOG.public})
    assert code_of(exc) == "note-unverified"


@pytest.mark.parametrize(
    "note",
    [
        BODY,  # no signatures
        BODY + "\n",
        BODY + "\n- name AAAAAAA=\n",  # hyphen, not em dash
        BODY + "\n\u2014 name\n",
        BODY + "\n\u2014  AAAAAAA=\n",  # empty name
        BODY + "\n\u2014 na+me AAAAAAA=\n",
        BODY + "\n\u2014 name AAAA\n",  # only 3 bytes
        BODY + "\n\u2014 name AAAAAAA\n",  # unpadded
        BODY + "\n\u2014 name AAAAAAA=",  # no final newline
        BODY + "\n\u2014 name AAAAAAA=\n\x00",
        "\ud800" + BODY + "\n\u2014 name AAAAAAA=\n",  # lone surrogate
        BODY + "\n" + "\u2014 name AAAAAAA=\n" * 101,
    ],
)
def test_malformed_notes(note: str) -> None:
    with pytest.raises(NoteError) as exc:
        open_note(note, {"name": LOG.public})
    assert code_of(exc) == "note-malformed"


@settings(max_examples=50, deadline=None)
@given(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1).map(lambda s: s + "\n")
)
def test_any_text_round_trips(text: str) -> None:
    assert open_note(sign_note(text, "n", LOG), {"n": LOG.public}) == (text, ["n"])


# -- cosignatures ------------------------------------------------------------


def test_cosignature_round_trip() -> None:
    line = cosign(BODY, "witness.example/w1", WITNESS, 1_679_315_147)
    assert line.startswith("\u2014 witness.example/w1 ")
    blob = base64.b64decode(line.split(" ")[-1])
    assert blob[:4] == key_id("witness.example/w1", WITNESS.public, COSIGNATURE_V1)
    assert int.from_bytes(blob[4:12], "big") == 1_679_315_147
    assert len(blob) == 4 + 8 + 64
    assert verify_cosignature(BODY, line, "witness.example/w1", WITNESS.public) == 1_679_315_147


def test_cosigned_message_is_tlog_cosignature_v1() -> None:
    line = cosign(BODY, "w", WITNESS, 7)
    signature = base64.b64decode(line.split(" ")[-1])[12:]
    assert signature == WITNESS.sign(b"cosignature/v1\ntime 7\n" + BODY.encode())


def test_cosigned_checkpoint_opens_with_log_key_only() -> None:
    note = sign_note(BODY, ORIGIN, LOG)
    cosigned = add_signatures(note, [cosign(BODY, "w", WITNESS, 7)])
    # The witness line is a 0x04 key ID: ignored even if the name is trusted for notes.
    assert open_note(cosigned, {ORIGIN: LOG.public, "w": WITNESS.public}) == (BODY, [ORIGIN])


def test_cosignature_tampering_fails() -> None:
    line = cosign(BODY, "w", WITNESS, 7)
    other_body = checkpoint_body(ORIGIN, 43, ROOT)
    with pytest.raises(NoteError):
        verify_cosignature(other_body, line, "w", WITNESS.public)
    with pytest.raises(NoteError):
        verify_cosignature(BODY, line, "w", OTHER.public)
    with pytest.raises(NoteError):
        verify_cosignature(BODY, line, "w2", WITNESS.public)
    blob = bytearray(base64.b64decode(line.split(" ")[-1]))
    for i in range(len(blob)):
        altered = bytearray(blob)
        altered[i] ^= 1
        bad_line = f"\u2014 w {base64.b64encode(bytes(altered)).decode()}\n"
        with pytest.raises(NoteError):
            verify_cosignature(BODY, bad_line, "w", WITNESS.public)
    # A plain Ed25519 note signature is not a cosignature.
    note_line = sign_note(BODY, "w", WITNESS).split("\n\n")[-1]
    with pytest.raises(NoteError):
        verify_cosignature(BODY, note_line, "w", WITNESS.public)


def test_cosign_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        cosign(BODY, "w", WITNESS, -1)
    with pytest.raises(ValueError):
        cosign(BODY, "w", WITNESS, 2**63)
    with pytest.raises(NoteError):
        cosign("not a checkpoint\n", "w", WITNESS, 1)
