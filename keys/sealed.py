"""Private keys sealed at rest (THREATS: thief of a disk or backup).

A key file is a JSON object. Sealed (the normal case)::

    {"format": "xb1-keyfile/1", "sealed": true,
     "kdf": {"alg": "argon2id", "opslimit": N, "memlimit": N, "salt": B64},
     "nonce": B64, "ciphertext": B64}

* argon2id(passphrase, 16-byte random salt, opslimit, memlimit) derives a 32-byte key;
  the passphrase is NFC-normalised first so the same words typed on another system work.
* XChaCha20-Poly1305-IETF (PROTOCOL §1) with a random 24-byte nonce encrypts the xb1-json
  of the secret key object. The associated data is the xb1-json of the header
  ``{"format", "kdf", "sealed"}``, so editing the format, the KDF parameters or the salt
  makes opening fail like a wrong passphrase: the two cannot be told apart.
* Unsealed (``"sealed": false, "keys": {...}``) exists for demos only: it is written only
  with ``unsafe_unsealed=True`` and loading it warns with ``UnsealedKeyWarning``.

Files are written with mode 0600, atomically (temporary file in the same directory,
fsync, ``os.replace``, fsync of the directory). KDF limits read from a file are bounded
so a crafted file cannot make loading allocate without limit. Hazard: Python cannot wipe
the passphrase or the opened keys from memory (THREATS: compromised OS is out of scope).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import tempfile
import unicodedata
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.pwhash.argon2id as argon2id

from schemas import xb1json
from schemas.b64 import b64d, b64e
from schemas.errors import WireFormatError

FORMAT = "xb1-keyfile/1"
KDF_ALG = "argon2id"
SALT_BYTES = argon2id.SALTBYTES  # 16
NONCE_BYTES = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
KEY_BYTES = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES  # 32
MAX_FILE_BYTES = 1024 * 1024

OPSLIMIT_MODERATE = argon2id.OPSLIMIT_MODERATE
MEMLIMIT_MODERATE = argon2id.MEMLIMIT_MODERATE
OPSLIMIT_INTERACTIVE = argon2id.OPSLIMIT_INTERACTIVE
MEMLIMIT_INTERACTIVE = argon2id.MEMLIMIT_INTERACTIVE
OPSLIMIT_MIN = argon2id.OPSLIMIT_MIN  # tests only
MEMLIMIT_MIN = argon2id.MEMLIMIT_MIN  # tests only
#: Key-derivation settings below which an opened key file warns (the test suite, whose
#: key files use the minimum to stay fast, lowers it).
WEAK_BELOW = (OPSLIMIT_INTERACTIVE, MEMLIMIT_INTERACTIVE)
OPSLIMIT_BOUND = 16
MEMLIMIT_BOUND = argon2id.MEMLIMIT_SENSITIVE  # 1 GiB


class KeyFileError(Exception):
    """A key file could not be opened. ``code`` is ``key-file-passphrase`` (wrong or
    missing passphrase, or an edited header/ciphertext) or ``key-file-malformed``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class KeyFileWarning(UserWarning):
    """A key file opened, but is weakly protected."""


class UnsealedKeyWarning(KeyFileWarning):
    """A private key file was stored without a passphrase (demo mode)."""


class WeakKeyFileWarning(KeyFileWarning):
    """A key file sealed with key-derivation settings below argon2id's interactive ones."""


@contextlib.contextmanager
def key_file_warnings(path: str | os.PathLike[str], say: Callable[[str], None]) -> Iterator[None]:
    """Key files opened inside: each :class:`KeyFileWarning` passed to ``say`` as one
    line naming ``path`` (other warnings go on as they were)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KeyFileWarning)
        yield
    for warning in caught:
        if issubclass(warning.category, KeyFileWarning):
            say(f"WARNING: {os.fspath(path)}: {warning.message}")
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )


def _malformed(message: str) -> KeyFileError:
    return KeyFileError("key-file-malformed", message)


def _check_limits(opslimit: object, memlimit: object) -> tuple[int, int]:
    for name, value, low, high in (
        ("opslimit", opslimit, OPSLIMIT_MIN, OPSLIMIT_BOUND),
        ("memlimit", memlimit, MEMLIMIT_MIN, MEMLIMIT_BOUND),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _malformed(f"kdf {name} must be an integer in [{low}, {high}]")
    return opslimit, memlimit  # type: ignore[return-value]


def _derive(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    if not isinstance(passphrase, str) or not passphrase:
        raise KeyFileError("key-file-passphrase", "a non-empty passphrase is needed")
    try:
        secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    except UnicodeEncodeError as e:  # bytes from the environment that are not UTF-8
        raise KeyFileError(
            "key-file-passphrase",
            "the passphrase holds bytes that are not UTF-8 text; set it again as text",
        ) from e
    return argon2id.kdf(KEY_BYTES, secret, salt, opslimit=opslimit, memlimit=memlimit)


def _header(kdf: dict[str, Any]) -> bytes:
    """The associated data: canonical header, so any edit of it fails to open."""
    return xb1json.dumps({"format": FORMAT, "sealed": True, "kdf": kdf})


def seal_keys(
    keys: dict[str, Any],
    passphrase: str,
    *,
    opslimit: int = OPSLIMIT_MODERATE,
    memlimit: int = MEMLIMIT_MODERATE,
) -> bytes:
    """Return the bytes of a sealed key file holding the JSON object ``keys``."""
    if not isinstance(passphrase, str) or not passphrase:
        raise ValueError("sealing needs a non-empty passphrase")
    opslimit, memlimit = _check_limits(opslimit, memlimit)
    salt = secrets.token_bytes(SALT_BYTES)
    nonce = secrets.token_bytes(NONCE_BYTES)
    kdf = {"alg": KDF_ALG, "opslimit": opslimit, "memlimit": memlimit, "salt": b64e(salt)}
    key = _derive(passphrase, salt, opslimit, memlimit)
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        xb1json.dumps(keys), _header(kdf), nonce, key
    )
    document = {
        "format": FORMAT,
        "sealed": True,
        "kdf": kdf,
        "nonce": b64e(nonce),
        "ciphertext": b64e(ciphertext),
    }
    return xb1json.dumps(document) + b"\n"


def unsealed_keys(keys: dict[str, Any]) -> bytes:
    """Return the bytes of an UNSEALED key file (demos only; see ``write_key_file``)."""
    return xb1json.dumps({"format": FORMAT, "sealed": False, "keys": keys}) + b"\n"


def _members(value: object, expected: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != expected:
        raise _malformed(f"{what} must be an object with exactly {sorted(expected)}")
    return value


def open_keys(data: bytes, passphrase: str | None) -> dict[str, Any]:
    """Open key file bytes and return the secret key object.

    Raises ``KeyFileError``; an unsealed file opens with an ``UnsealedKeyWarning``."""
    if len(data) > MAX_FILE_BYTES:
        raise _malformed(f"key file is larger than {MAX_FILE_BYTES} bytes")
    try:
        document = xb1json.loads(data)
    except WireFormatError as e:
        raise _malformed(f"key file is not valid JSON: {e}") from e
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _malformed(f"not an {FORMAT} key file")
    if document.get("sealed") is False:
        document = _members(document, {"format", "sealed", "keys"}, "unsealed key file")
        if not isinstance(document["keys"], dict):
            raise _malformed("keys must be an object")
        warnings.warn(
            "private keys are stored UNSEALED (no passphrase); use a sealed key file outside demos",
            UnsealedKeyWarning,
            stacklevel=2,
        )
        return document["keys"]
    document = _members(
        document, {"format", "sealed", "kdf", "nonce", "ciphertext"}, "sealed key file"
    )
    if document["sealed"] is not True:
        raise _malformed("sealed must be true or false")
    kdf = _members(document["kdf"], {"alg", "opslimit", "memlimit", "salt"}, "kdf")
    if kdf["alg"] != KDF_ALG:
        raise _malformed(f"kdf alg must be {KDF_ALG!r}")
    opslimit, memlimit = _check_limits(kdf["opslimit"], kdf["memlimit"])
    try:
        salt = b64d(kdf["salt"], length=SALT_BYTES, what="salt")
        nonce = b64d(document["nonce"], length=NONCE_BYTES, what="nonce")
        ciphertext = b64d(document["ciphertext"], what="ciphertext")
    except WireFormatError as e:
        raise _malformed(str(e)) from e
    if len(ciphertext) < nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES:
        raise _malformed("ciphertext is shorter than its authentication tag")
    if passphrase is None:
        raise KeyFileError("key-file-passphrase", "the key file is sealed; a passphrase is needed")
    key = _derive(passphrase, salt, opslimit, memlimit)
    try:
        plaintext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, _header(kdf), nonce, key
        )
    except nacl.exceptions.CryptoError as e:
        raise KeyFileError(
            "key-file-passphrase", "wrong passphrase, or the key file was modified"
        ) from e
    try:
        keys = xb1json.loads(plaintext)
    except WireFormatError as e:
        raise _malformed(f"sealed content is not valid JSON: {e}") from e
    if not isinstance(keys, dict):
        raise _malformed("sealed content must be a JSON object")
    if opslimit < WEAK_BELOW[0] or memlimit < WEAK_BELOW[1]:
        warnings.warn(
            f"sealed with weak key-derivation settings ({opslimit} passes, "
            f"{memlimit // 1024} KiB; argon2id's interactive minimum is "
            f"{OPSLIMIT_INTERACTIVE} passes, {MEMLIMIT_INTERACTIVE // 2**20} MiB): a stolen "
            "copy costs little to guess; seal it again with the default settings (a "
            "node's keys: 'gateway keys reseal')",
            WeakKeyFileWarning,
            stacklevel=2,
        )
    return keys


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes,
    mode: int = 0o600,
    *,
    owner: tuple[int, int] | None = None,
) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` (and ``owner``, uid and gid,
    when given): temp file in the same directory, fsync, ``os.replace``, then fsync
    the directory so the rename survives a crash. The owner is given to the temp
    file before it replaces anything: a PermissionError then leaves ``path`` as it was."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(
            dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
        )
    except FileNotFoundError:
        if os.path.isdir(directory):
            raise
        # Name the file asked for, not the hidden temporary one beside it.
        raise FileNotFoundError(
            errno.ENOENT, f"cannot write {path}: the folder {directory} does not exist", path
        ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            if owner is not None:
                os.fchown(f.fileno(), *owner)
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def trusted_target(path: str | os.PathLike[str]) -> str:
    """The file to write for ``path``, found as the kernel would find it, following only
    symbolic links of the caller's own or of root, wherever they are in the path (the
    file itself or a folder on the way). A link another account made (the node's
    account, whose folder it is, or someone who took that account over) is not
    followed: it could lead a rotation run as root to overwrite any file of the system
    (a PermissionError naming the link instead)."""
    given = os.fspath(path)
    # Not os.path.abspath, which tidies "link/.." away as text before the link is read.
    pending = (given if os.path.isabs(given) else os.path.join(os.getcwd(), given)).split(os.sep)
    resolved = os.sep
    caller = os.geteuid()
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            resolved = os.path.dirname(resolved)
            continue
        candidate = os.path.join(resolved, part)
        try:
            status = os.lstat(candidate)
        except FileNotFoundError:
            return os.path.join(candidate, *pending)  # to be made: nothing to follow
        if not stat.S_ISLNK(status.st_mode):
            resolved = candidate
            continue
        if status.st_uid not in (caller, 0):
            raise PermissionError(
                errno.EPERM,
                f"it is a symbolic link of another account (uid {status.st_uid}), which is "
                "not followed; check where it leads and who made it, then replace it with "
                "what it stands for, or run the command as that account",
                candidate,
            )
        hops += 1
        if hops > 40:  # the kernel's own bound
            raise OSError(errno.ELOOP, "too many symbolic links", given)
        link = os.readlink(candidate)
        if link.startswith(os.sep):
            resolved = os.sep
        pending = link.split(os.sep) + pending
    return resolved


def write_key_file(
    path: str | os.PathLike[str],
    keys: dict[str, Any],
    passphrase: str | None,
    *,
    unsafe_unsealed: bool = False,
    opslimit: int = OPSLIMIT_MODERATE,
    memlimit: int = MEMLIMIT_MODERATE,
) -> None:
    """Seal ``keys`` under ``passphrase`` and write them (mode 0600, atomic). Without a
    passphrase the file is written unsealed only if ``unsafe_unsealed`` is True.

    A file written again (a rotation, a prune, a new passphrase) keeps its owner, and a
    symbolic link stays a link (its target is written; :func:`trusted_target`): run as
    root for the node's account, the command must not leave a file that account can no
    longer read. Another account's file is written only by root."""
    if passphrase is not None:
        data = seal_keys(keys, passphrase, opslimit=opslimit, memlimit=memlimit)
    elif unsafe_unsealed:
        data = unsealed_keys(keys)
    else:
        raise ValueError("no passphrase given; pass unsafe_unsealed=True only for demos")
    target = trusted_target(path)
    try:
        status = os.stat(target)
    except FileNotFoundError:
        atomic_write(target, data)
        return
    caller = os.geteuid()
    if status.st_uid != caller and caller != 0:
        raise PermissionError(
            errno.EACCES,
            f"it belongs to another account (uid {status.st_uid}), which this one cannot give "
            "the new file to; run the command as that account (or as root)",
            target,
        )
    try:
        atomic_write(target, data, owner=(status.st_uid, status.st_gid))
    except PermissionError:
        if status.st_uid != caller:  # root that may not give files away (a shared mount)
            raise
        atomic_write(target, data)  # one's own file in a group one is not in


def read_key_file(path: str | os.PathLike[str], passphrase: str | None) -> dict[str, Any]:
    """Read and open a key file (see ``open_keys``)."""
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    return open_keys(data, passphrase)
