"""C2SP signed notes, tlog checkpoints and tlog cosignatures (PROTOCOL §6).

Formats implemented, with the spec sections the checks cite:

* https://c2sp.org/signed-note — "Format": a note is text ending in a newline, a
  blank line, then signature lines ``— <key name> base64(key ID || signature)``;
  "Signatures": key ID = SHA-256(name || 0x0A || type || public key)[:4];
  "Ed25519 signatures": type 0x01, signed over the note text; "Verifier keys":
  ``<name>+<hex key ID>+base64(type || public key)``.
* https://c2sp.org/tlog-checkpoint — "Note text": origin, tree size, root hash,
  optional extension lines.
* https://c2sp.org/tlog-cosignature — "Format" and "Ed25519 signed message":
  type 0x04, a signature over ``cosignature/v1\\ntime T\\n`` || checkpoint body,
  carried as key ID || u64 big-endian timestamp || signature.

Base64 is RFC 4648 §4 (standard alphabet, padded) and is decoded strictly: a
value that does not re-encode to the same text is refused. Peer-supplied text
that breaks a format raises :class:`NoteError` ``note-malformed``; a note with no
valid signature from a key we know raises ``note-unverified``.

Hazards: a key ID is a 4-byte identifier, not a security check; trust comes only
from verifying with a public key configured locally for that name. An Ed25519
cosignature does not commit to the cosigner's name, so one witness key must not
be used under two names (tlog-cosignature "Ed25519 signed message").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

from gateway.errors import PeerError
from keys.keypair import verify_signature

ED25519 = 0x01
"""signed-note "Signature types": Ed25519 note signatures."""
COSIGNATURE_V1 = 0x04
"""signed-note "Signature types": timestamped Ed25519 witness cosignatures."""

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEY_ID_BYTES = 4
ROOT_HASH_BYTES = 32
MAX_SIGNATURES = 100
"""signed-note "Format": verifiers SHOULD cap signatures and MUST accept at least 16."""
MAX_TIMESTAMP = 2**63 - 1
"""tlog-cosignature "Format": the timestamp MUST NOT exceed 2^63 - 1."""
MAX_TREE_SIZE = 2**63 - 1

_SIG_PREFIX = "\u2014 "  # em dash, space
_COSIGNATURE_HEADER = "cosignature/v1\n"
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class NoteError(PeerError):
    """A note, checkpoint or cosignature from a peer that we refuse.

    ``code`` is ``note-malformed`` (does not parse) or ``note-unverified`` (no
    valid signature from a known key, a known key's signature fails, or a
    cosignature does not verify).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


class NoteSigner(Protocol):
    """What signing needs: :class:`keys.keypair.SigningKeyPair` satisfies it."""

    @property
    def public(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class Checkpoint(NamedTuple):
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...]


class VerifierKey(NamedTuple):
    name: str
    sig_type: int
    public: bytes


def _malformed(message: str) -> NoteError:
    return NoteError("note-malformed", message)


def _b64e(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _b64d(text: str, what: str) -> bytes:
    """Strict RFC 4648 §4 base64: alphabet, padding and canonical trailing bits."""
    if not _B64.fullmatch(text) or len(text) % 4:
        raise _malformed(f"{what} is not padded standard base64")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as e:
        raise _malformed(f"{what} is not padded standard base64") from e
    if _b64e(raw) != text:
        raise _malformed(f"{what} is not canonical base64")
    return raw


def _check_key_name(name: object) -> str:
    """signed-note "Format": non-empty, no Unicode spaces, no plus."""
    if (
        not isinstance(name, str)
        or not name
        or "+" in name
        or any(c.isspace() for c in name)
        or _CONTROL.search(name)
    ):
        raise _malformed(f"invalid key name {name!r}")
    return name


def _check_text(text: object, what: str) -> str:
    """signed-note "Format": valid UTF-8, no ASCII control characters but newline."""
    if not isinstance(text, str):
        raise _malformed(f"{what} must be text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _malformed(f"{what} is not valid UTF-8") from e
    if _CONTROL.search(text):
        raise _malformed(f"{what} contains a control character")
    return text


def _check_body(body: object) -> str:
    """signed-note "Format": the note text is non-empty and ends in a newline."""
    text = _check_text(body, "note text")
    if not text.endswith("\n"):
        raise _malformed("note text must end with a newline")
    return text


# -- tlog-checkpoint ---------------------------------------------------------


def checkpoint_body(origin: str, size: int, root: bytes, extensions: Sequence[str] = ()) -> str:
    """tlog-checkpoint "Note text": origin, decimal size, base64 root, extensions."""
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
        raise ValueError("tree size must be an integer in 0..2^63-1")
    if not isinstance(root, bytes) or len(root) != ROOT_HASH_BYTES:
        raise ValueError(f"root hash must be {ROOT_HASH_BYTES} bytes")
    lines = [origin, str(size), _b64e(root), *extensions]
    for line in (origin, *extensions):
        if not isinstance(line, str) or not line or "\n" in line or _CONTROL.search(line):
            raise ValueError(f"checkpoint line {line!r} must be non-empty single-line text")
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(body: str) -> Checkpoint:
    """tlog-checkpoint "Note text", strictly: every rule is checked, nothing is repaired.

    Unpacks as ``(origin, size, root, extensions)``.
    """
    text = _check_body(body)
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise _malformed("checkpoint needs origin, tree size and root hash lines")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise _malformed("checkpoint origin is empty")
    # Item 2: ASCII decimal, no leading zeroes.
    if not _DECIMAL.fullmatch(size_text) or int(size_text) > MAX_TREE_SIZE:
        raise _malformed("checkpoint tree size is not a canonical decimal")
    root = _b64d(root_text, "checkpoint root hash")
    if len(root) != ROOT_HASH_BYTES:
        raise _malformed(f"checkpoint root hash must be {ROOT_HASH_BYTES} bytes")
    # Item 4: extension lines, if any, MUST be non-empty.
    if any(not line for line in extensions):
        raise _malformed("checkpoint extension line is empty")
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


# -- signed-note -------------------------------------------------------------


def key_id(name: str, public: bytes, sig_type: int = ED25519) -> bytes:
    """signed-note "Signatures": SHA-256(name || 0x0A || type || public key)[:4] (PROTOCOL §6)."""
    _check_key_name(name)
    if len(public) != PUBLIC_KEY_BYTES:
        raise ValueError(f"public key must be {PUBLIC_KEY_BYTES} bytes")
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public).digest()
    return digest[:KEY_ID_BYTES]


def _signature_line(name: str, blob: bytes) -> str:
    return f"{_SIG_PREFIX}{name} {_b64e(blob)}\n"


def sign_note(body: str, name: str, signer: NoteSigner) -> str:
    """signed-note "Ed25519 signatures": the note text, a blank line, one signature line."""
    text = _check_body(body)
    _check_key_name(name)
    signature = signer.sign(text.encode("utf-8"))
    return text + "\n" + _signature_line(name, key_id(name, signer.public) + signature)


class _SignatureLine(NamedTuple):
    name: str
    key_id: bytes
    signature: bytes


def _split_note(text: object) -> tuple[str, list[_SignatureLine]]:
    """signed-note "Format": split at the last blank line and parse every signature line."""
    note = _check_text(text, "note")
    split = note.rfind("\n\n")
    if split < 0:
        raise _malformed("note has no blank line before its signatures")
    body, block = note[: split + 1], note[split + 2 :]
    if not block or not block.endswith("\n"):
        raise _malformed("note has no signature lines")
    raw_lines = block[:-1].split("\n")
    if len(raw_lines) > MAX_SIGNATURES:
        raise _malformed(f"note has more than {MAX_SIGNATURES} signatures")
    lines = []
    for raw in raw_lines:
        if not raw.startswith(_SIG_PREFIX):
            raise _malformed("signature line does not start with an em dash and a space")
        name, sep, b64 = raw[len(_SIG_PREFIX) :].partition(" ")
        if not sep:
            raise _malformed("signature line has no signature")
        _check_key_name(name)
        blob = _b64d(b64, "signature")
        if len(blob) <= KEY_ID_BYTES:
            raise _malformed("signature is too short")
        lines.append(_SignatureLine(name, blob[:KEY_ID_BYTES], blob[KEY_ID_BYTES:]))
    return body, lines


def open_note(text: str, verifiers: Mapping[str, bytes]) -> tuple[str, list[str]]:
    """Verify a signed note against Ed25519 keys we trust, by key name.

    Follows signed-note "Signatures": lines whose (name, key ID) match no known
    key are ignored; a known key's signature that fails rejects the whole note;
    at least one known key must verify. Returns the note text and the names
    that verified, in order of appearance, each once.
    """
    # Step 1: parse the whole note before trusting any of it.
    body, lines = _split_note(text)
    message = body.encode("utf-8")
    expected = {name: key_id(name, public) for name, public in verifiers.items()}
    # Step 2: verify every signature from a known key.
    verified: list[str] = []
    for line in lines:
        kid = expected.get(line.name)
        if kid is None or not hmac.compare_digest(kid, line.key_id):
            continue
        if not verify_signature(verifiers[line.name], message, line.signature):
            raise NoteError("note-unverified", f"signature by {line.name} does not verify")
        if line.name not in verified:
            verified.append(line.name)
    # Step 3: at least one.
    if not verified:
        raise NoteError("note-unverified", "no signature from a known key")
    return body, verified


def signature_lines(text: str) -> tuple[str, list[tuple[str, str]]]:
    """A signed note's body and its signature lines as ``(key name, line)``, each line
    ending in a newline as it appears in the note; nothing is verified."""
    body, lines = _split_note(text)
    return body, [
        (line.name, _signature_line(line.name, line.key_id + line.signature)) for line in lines
    ]


def add_signatures(note: str, signature_lines: Sequence[str]) -> str:
    """Append signature lines (e.g. cosignatures) to a signed note; all must parse."""
    combined = note + "".join(signature_lines)
    _split_note(combined)
    return combined


# -- verifier keys -----------------------------------------------------------


def vkey(name: str, public: bytes, sig_type: int = ED25519) -> str:
    """signed-note "Verifier keys": ``<name>+<hex key ID>+base64(type || public key)``."""
    return f"{name}+{key_id(name, public, sig_type).hex()}+{_b64e(bytes([sig_type]) + public)}"


def parse_vkey(text: str) -> VerifierKey:
    """Parse a verifier key and check its key ID; raises ``ValueError`` (keys are local config).

    Only Ed25519 note keys (0x01) and Ed25519 cosignature keys (0x04) are accepted.
    """
    name, _, rest = text.partition("+")
    hex_id, _, key_b64 = rest.partition("+")
    try:
        _check_key_name(name)
        raw = _b64d(key_b64, "verifier key")
    except NoteError as e:
        raise ValueError(f"malformed verifier key: {e.message}") from e
    if not _HEX_KEY_ID.fullmatch(hex_id):
        raise ValueError("verifier key ID must be 8 lowercase hex digits")
    if len(raw) != 1 + PUBLIC_KEY_BYTES or raw[0] not in (ED25519, COSIGNATURE_V1):
        raise ValueError("verifier key must be an Ed25519 note or cosignature key")
    sig_type, public = raw[0], raw[1:]
    if key_id(name, public, sig_type).hex() != hex_id:
        raise ValueError("verifier key ID does not match its name and key")
    return VerifierKey(name, sig_type, public)


# -- tlog-cosignature --------------------------------------------------------


def _cosigned_message(body: str, timestamp: int) -> bytes:
    """tlog-cosignature "Ed25519 signed message": header, time line, whole checkpoint body."""
    return f"{_COSIGNATURE_HEADER}time {timestamp}\n{body}".encode()


def cosign(body: str, name: str, signer: NoteSigner, timestamp: int) -> str:
    """A witness's tlog-cosignature/v1 signature line over a checkpoint body.

    The caller must already have checked consistency with every checkpoint of
    this origin it cosigned before: the signature states exactly that.
    """
    parse_checkpoint(body)
    _check_key_name(name)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise ValueError("timestamp must be an integer")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError("timestamp must be in 0..2^63-1")
    signature = signer.sign(_cosigned_message(body, timestamp))
    kid = key_id(name, signer.public, COSIGNATURE_V1)
    return _signature_line(name, kid + timestamp.to_bytes(8, "big") + signature)


def verify_cosignature(body: str, line: str, name: str, public: bytes) -> int:
    """Verify one cosignature line over a checkpoint body; returns its timestamp.

    Raises ``note-malformed`` if the line or body do not parse and
    ``note-unverified`` if the line is not by (name, key ID) or does not verify.
    """
    parse_checkpoint(body)
    _, lines = _split_note("x\n\n" + line)
    if len(lines) != 1:
        raise _malformed("expected exactly one cosignature line")
    (parsed,) = lines
    if parsed.name != name or not hmac.compare_digest(
        parsed.key_id, key_id(name, public, COSIGNATURE_V1)
    ):
        raise NoteError("note-unverified", f"cosignature is not by {name}")
    if len(parsed.signature) != 8 + SIGNATURE_BYTES:
        raise _malformed("cosignature must carry a timestamp and a 64-byte signature")
    timestamp = int.from_bytes(parsed.signature[:8], "big")
    if timestamp > MAX_TIMESTAMP:
        raise _malformed("cosignature timestamp exceeds 2^63-1")
    message = _cosigned_message(body, timestamp)
    if not verify_signature(public, message, parsed.signature[8:]):
        raise NoteError("note-unverified", f"cosignature by {name} does not verify")
    return timestamp
