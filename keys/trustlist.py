"""The federation trust list (PROTOCOL §5): who the admins and nodes are, and which keys count.

A ``TrustList`` is a verified, immutable version of the list; an invalid one cannot be
built through the public constructors (``from_anchor``, ``from_pinned``,
``verify_successor``, ``verify_chain``). ``TrustedKeys`` is the key lookup that envelope
opening uses (PROTOCOL §3 step 3). The builders at the end are for admins and tests.

The rules, each cited by the check that implements it (errors carry the code in brackets):

* T1 Wire form is ``{"list": B64(L), "signatures": [{"kid", "sig"}, ...]}``; L is strict
  canonical xb1-json with exactly the §5 members, each type-checked: node ids match
  ``^[A-Z]{2}(-[A-Z0-9]{1,16})?$`` and are unique, kids are unique and equal
  ``key_id(pub)``, ``1 <= threshold <= len(admins)``, ``issued_at < expires``,
  ``prev`` is null exactly for version 1 [trust-malformed].
* T2 A signature is Ed25519(admin key, ``"xb1:trust\\0" || L``) over the received L bytes.
  Signatures by unknown kids and invalid signatures are ignored, not errors; two
  signatures by one admin count once.
* T3 Version 1 is pinned out of band: SHA-256(L) must equal the anchor and the version
  must be 1 [trust-anchor-mismatch]; it needs >= t valid signatures by its own admins
  [trust-threshold].
* T4 A successor of version N must have version exactly N+1; older, equal, or skipped
  versions are refused [trust-rollback]. ``verify_chain`` walks N+1, N+2, ... one by one.
* T5 It needs >= t_N valid signatures by distinct admins of version N [trust-threshold].
* T6 Its ``prev`` equals SHA-256 of version N's L, in the same federation [trust-chain].
* T7 Its ``issued_at`` is not earlier than version N's [trust-time].
* T8 It needs >= t_{N+1} valid signatures by distinct admins of version N+1, so an admin
  set change needs both the old and the new threshold [trust-threshold].
* T9 A new list that is already expired at ``now`` is refused [trust-expired]. A list the
  node already holds is never refused for expiry: ``is_expired(now)`` tells the node to
  stop sending and raise an alarm (freeze).
* T10 A new list issued more than ``ISSUED_AHEAD_MOST`` (a day) after ``now`` is refused
  [trust-time]: by T7 no version issued before it could follow, so a list dated years
  ahead by a wrong clock would stop every later version (a revocation among them) until
  that date. A list the node already holds is not judged again for it.
* K1 A key is usable for a message when ``status`` is ``active``, or ``retired`` and
  ``not_before <= iat <= not_after``. A ``revoked`` key is refused from ``revoked_at`` on,
  whatever ``iat`` says; before ``revoked_at`` it behaves like a retired key, except that a
  message claiming ``iat >= revoked_at`` is refused too.
* K2 A sender is ``from.kid`` listed as a ``sig`` key of ``from.node`` [unknown-sender] that
  is usable (K1) [key-not-valid] (PROTOCOL §3 step 3).
* K3 A recipient's key is its ``active`` ``enc`` key inside [not_before, not_after] at
  ``now`` with the latest ``not_before`` [unknown-recipient].
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from schemas import xb1json
from schemas.b64 import b64d, b64e
from schemas.errors import WireFormatError

from .keypair import (
    KEY_BYTES,
    SIGNATURE_BYTES,
    EncryptionKeyPair,
    SigningKeyPair,
    key_id,
    verify_signature,
)

_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_ENDPOINT = re.compile(
    r"https?://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?"
    # RFC 3986 path characters (unreserved, percent-encoded, sub-delims, ":", "@").
    r"(?P<path>(?:/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*)*)\Z"
)


def is_endpoint(value: str) -> bool:
    """A node's endpoint: an http(s) URL of a host name (an international domain name
    in its xn-- form; a trailing dot allowed), a dotted IPv4 address or a bracketed
    IPv6 address, an optional port (1 to 65535) and a path of RFC 3986 characters
    without "." or ".." segments; no user name, query or fragment (the dispatcher
    appends /xb1/... to it). One check for the trust list, proposals and `gateway
    keys entry`."""
    found = _ENDPOINT.match(value)
    if found is None:
        return False
    if found["port"] is not None and not 1 <= int(found["port"]) <= 65535:
        return False
    if any(segment in (".", "..") for segment in found["path"].split("/")[1:]):
        return False
    host = found["host"]
    if host.startswith("["):
        try:
            return ipaddress.ip_address(host[1:-1]).version == 6
        except ValueError:
            return False
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if not all(_HOST_LABEL.match(label) for label in labels):
        return False
    if labels[-1].isdigit() or labels[-1].lower().startswith("0x"):
        # Numeric: resolvers read 10.1 or 0x7f.1 as addresses, so only a dotted quad.
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return False
    return True


SUITE = "xb1"
SIGNING_PREFIX = b"xb1:trust\0"
NODE_ID = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,16})?")
KID = re.compile(r"[0-9a-f]{32}")
MAX_TIME = 2**53 - 1
MAX_WIRE_BYTES = 4 * 1024 * 1024
MAX_SIGNATURES = 256
MAX_TEXT = 1024

KeyUse = Literal["sig", "enc"]
KeyStatus = Literal["active", "retired", "revoked"]
_USES = ("sig", "enc")
_STATUSES = ("active", "retired", "revoked")
_LIST_MEMBERS = frozenset(
    {
        "suite",
        "federation",
        "version",
        "issued_at",
        "expires",
        "prev",
        "threshold",
        "admins",
        "nodes",
    }
)
_KEY_MEMBERS = frozenset({"kid", "use", "pub", "not_before", "not_after", "status"})


class TrustError(Exception):
    """A trust decision failed. ``code`` is a stable string (module docstring), ``message``
    a sentence for operators."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"TrustError({self.code!r}, {self.message!r})"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class NodeKey:
    """One public key of a node as listed in §5 ``nodes[].keys``."""

    node: str
    kid: str
    use: KeyUse
    pub: bytes
    not_before: int
    not_after: int
    status: KeyStatus
    revoked_at: int | None = None

    def __post_init__(self) -> None:
        """T1: every member typed and bounded; ``kid`` is ``key_id(pub)`` (§1)."""
        if not isinstance(self.node, str) or not NODE_ID.fullmatch(self.node):
            raise ValueError(f"node id {self.node!r} does not match {NODE_ID.pattern}")
        if not isinstance(self.pub, bytes) or len(self.pub) != KEY_BYTES:
            raise ValueError(f"public key must be {KEY_BYTES} bytes")
        if self.kid != key_id(self.pub):
            raise ValueError(f"kid {self.kid!r} is not the key id of its public key")
        if self.use not in _USES:
            raise ValueError(f"key use must be 'sig' or 'enc', not {self.use!r}")
        if self.status not in _STATUSES:
            raise ValueError(f"key status {self.status!r} is not active, retired or revoked")
        for name in ("not_before", "not_after"):
            value = getattr(self, name)
            if not _is_int(value) or not 0 <= value <= MAX_TIME:
                raise ValueError(f"{name} must be an integer time in [0, 2^53-1]")
        if self.not_before > self.not_after:
            raise ValueError("not_before is after not_after")
        if self.revoked_at is not None:
            if self.status != "revoked":
                raise ValueError("revoked_at is only allowed on a revoked key")
            if not _is_int(self.revoked_at) or not 0 <= self.revoked_at <= MAX_TIME:
                raise ValueError("revoked_at must be an integer time in [0, 2^53-1]")

    def revoked_by(self, now: int) -> bool:
        """§5: a revoked key is refused for everything from ``revoked_at`` on (at once
        without one), whatever a signature's own date says."""
        return self.status == "revoked" and (self.revoked_at is None or now >= self.revoked_at)

    def usable(self, iat: int, now: int) -> bool:
        """K1 (§5): may this key vouch for a message issued at ``iat``, judged at ``now``?"""
        if self.status == "active":
            return True
        if self.status == "revoked":
            # A revoked key without a time is refused outright; from revoked_at on it is
            # refused whatever iat says, and a message dated after revocation never counts.
            if self.revoked_at is None or now >= self.revoked_at or iat >= self.revoked_at:
                return False
        return self.not_before <= iat <= self.not_after

    def to_entry(self) -> dict[str, Any]:
        """The §5 key object (b64url ``pub``)."""
        entry: dict[str, Any] = {
            "kid": self.kid,
            "use": self.use,
            "pub": b64e(self.pub),
            "not_before": self.not_before,
            "not_after": self.not_after,
            "status": self.status,
        }
        if self.revoked_at is not None:
            entry["revoked_at"] = self.revoked_at
        return entry


class TrustedKeys:
    """Key lookup for envelope opening and sealing (§3 steps 3 and 7, §5)."""

    __slots__ = ("_by_kid", "_by_node")

    def __init__(self, keys: Iterable[NodeKey]) -> None:
        by_kid: dict[str, NodeKey] = {}
        by_node: dict[str, list[NodeKey]] = {}
        for key in keys:
            if key.kid in by_kid:
                raise ValueError(f"kid {key.kid} is listed twice")
            by_kid[key.kid] = key
            by_node.setdefault(key.node, []).append(key)
        self._by_kid = by_kid
        self._by_node = {node: tuple(ks) for node, ks in by_node.items()}

    @classmethod
    def from_entries(cls, entries: Sequence[Mapping[str, Any]]) -> TrustedKeys:
        """Build from the test-vector form ``{"node","kid","pub", "use"?, "status"?,
        "not_before"?, "not_after"?, "revoked_at"?}``; bad entries are [trust-malformed]."""
        keys = []
        try:
            for entry in entries:
                keys.append(
                    NodeKey(
                        node=entry["node"],
                        kid=entry["kid"],
                        use=entry.get("use", "sig"),
                        pub=b64d(entry["pub"], length=KEY_BYTES, what="pub"),
                        not_before=entry.get("not_before", 0),
                        not_after=entry.get("not_after", MAX_TIME),
                        status=entry.get("status", "active"),
                        revoked_at=entry.get("revoked_at"),
                    )
                )
            return cls(keys)
        except (KeyError, TypeError, ValueError) as e:  # WireFormatError is a ValueError
            raise TrustError("trust-malformed", f"bad trusted key entry: {e}") from e

    def keys_of(self, node: str) -> tuple[NodeKey, ...]:
        """All listed keys of ``node`` (any use and status); empty if the node is unknown."""
        return self._by_node.get(node, ())

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(self._by_node)

    def signing_key(self, node: str, kid: str, iat: int, now: int) -> bytes:
        """K2 (§3 step 3): the public key that must have signed a message from ``node``."""
        key = self._by_kid.get(kid) if isinstance(kid, str) else None
        if key is None or key.node != node or key.use != "sig":
            raise TrustError("unknown-sender", f"{kid!r} is not a signing key of node {node!r}")
        if not key.usable(iat, now):
            raise TrustError(
                "key-not-valid", f"signing key {kid} of {node} is {key.status} and not usable"
            )
        return key.pub

    def encryption_key(self, node: str, now: int) -> NodeKey:
        """K3: the key to seal content keys to for ``node`` at ``now``."""
        candidates = [
            k
            for k in self.keys_of(node)
            if k.use == "enc" and k.status == "active" and k.not_before <= now <= k.not_after
        ]
        if not candidates:
            raise TrustError("unknown-recipient", f"no usable encryption key for node {node!r}")
        return max(candidates, key=lambda k: (k.not_before, k.kid))


class Admin(NamedTuple):
    """A federation admin (§5 ``admins``)."""

    kid: str
    pub: bytes
    label: str


class NodeEntry(NamedTuple):
    """A node as listed (§5 ``nodes``)."""

    node: str
    name: str
    endpoint: str
    keys: tuple[NodeKey, ...]


class _Contents(NamedTuple):
    federation: str
    version: int
    issued_at: int
    expires: int
    prev: bytes | None
    threshold: int
    admins: tuple[Admin, ...]
    nodes: tuple[NodeEntry, ...]


def _malformed(message: str) -> TrustError:
    return TrustError("trust-malformed", message)


def _object(
    value: object, required: frozenset[str], what: str, optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(f"{what} must be a JSON object")
    missing = required - value.keys()
    extra = value.keys() - required - optional
    if missing or extra:
        raise _malformed(f"{what} members wrong (missing {sorted(missing)}, extra {sorted(extra)})")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT:
        raise _malformed(f"{what} must be a non-empty string of at most {MAX_TEXT} characters")
    return value


def _time(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIME:
        raise _malformed(f"{what} must be an integer time in [0, 2^53-1]")
    return value


def _pub(entry: Mapping[str, Any], what: str) -> bytes:
    try:
        pub = b64d(entry["pub"], length=KEY_BYTES, what=f"{what}.pub")
    except WireFormatError as e:
        raise _malformed(str(e)) from e
    if not isinstance(entry["kid"], str) or entry["kid"] != key_id(pub):
        raise _malformed(f"{what}.kid is not the key id of its public key")
    return pub


def _parse_wire(wire: bytes) -> tuple[bytes, tuple[Mapping[str, str], ...]]:
    """T1: the outer ``{"list", "signatures"}`` object, strictly."""
    if not isinstance(wire, (bytes, bytearray)) or len(wire) > MAX_WIRE_BYTES:
        raise _malformed(f"trust list wire must be bytes of at most {MAX_WIRE_BYTES}")
    try:
        outer = xb1json.loads(bytes(wire))
        outer = _object(outer, frozenset({"list", "signatures"}), "trust list wire")
        raw = b64d(outer["list"], what="list")
    except WireFormatError as e:
        raise _malformed(f"trust list wire: {e}") from e
    sigs = outer["signatures"]
    if not isinstance(sigs, list) or len(sigs) > MAX_SIGNATURES:
        raise _malformed(f"signatures must be a list of at most {MAX_SIGNATURES}")
    checked = []
    for i, sig in enumerate(sigs):
        sig = _object(sig, frozenset({"kid", "sig"}), f"signatures[{i}]")
        if not isinstance(sig["kid"], str) or not KID.fullmatch(sig["kid"]):
            raise _malformed(f"signatures[{i}].kid is not a key id")
        try:
            b64d(sig["sig"], length=SIGNATURE_BYTES, what=f"signatures[{i}].sig")
        except WireFormatError as e:
            raise _malformed(str(e)) from e
        checked.append(MappingProxyType({"kid": sig["kid"], "sig": sig["sig"]}))
    return raw, tuple(checked)


_REVOKED_AT = frozenset({"revoked_at"})


def _parse_key(node: str, value: object, what: str) -> NodeKey:
    # §5 makes revoked_at optional: a revoked key without it is refused for everything
    # (NodeKey.usable). It is meaningless on a key that is not revoked, and refused there.
    revoked = isinstance(value, dict) and value.get("status") == "revoked"
    entry = _object(value, _KEY_MEMBERS, what, _REVOKED_AT if revoked else frozenset())
    pub = _pub(entry, what)
    try:
        return NodeKey(
            node=node,
            kid=entry["kid"],
            use=entry["use"],
            pub=pub,
            not_before=_time(entry["not_before"], f"{what}.not_before"),
            not_after=_time(entry["not_after"], f"{what}.not_after"),
            status=entry["status"],
            revoked_at=entry.get("revoked_at"),
        )
    except ValueError as e:
        raise _malformed(f"{what}: {e}") from e


def _parse_list(raw: bytes) -> _Contents:
    """T1: parse L strictly and check every member."""
    try:
        doc = xb1json.loads_canonical(raw)
    except WireFormatError as e:
        raise _malformed(f"list L: {e}") from e
    doc = _object(doc, _LIST_MEMBERS, "list L")
    if doc["suite"] != SUITE:
        raise _malformed(f"suite must be {SUITE!r}")
    federation = _text(doc["federation"], "federation")
    version = doc["version"]
    if not _is_int(version) or version < 1:
        raise _malformed("version must be an integer >= 1")
    issued_at = _time(doc["issued_at"], "issued_at")
    expires = _time(doc["expires"], "expires")
    if not issued_at < expires:
        raise _malformed("issued_at must be before expires")
    prev: bytes | None = None
    if version == 1:
        if doc["prev"] is not None:
            raise _malformed("prev must be null in version 1")
    else:
        try:
            prev = b64d(doc["prev"], length=32, what="prev")
        except WireFormatError as e:
            raise _malformed(f"prev must be B64 of a SHA-256 after version 1: {e}") from e

    admins_doc = doc["admins"]
    if not isinstance(admins_doc, list) or not admins_doc:
        raise _malformed("admins must be a non-empty list")
    admins = []
    for i, value in enumerate(admins_doc):
        entry = _object(value, frozenset({"kid", "pub", "label"}), f"admins[{i}]")
        pub = _pub(entry, f"admins[{i}]")
        admins.append(Admin(entry["kid"], pub, _text(entry["label"], f"admins[{i}].label")))
    if len({a.kid for a in admins}) != len(admins):
        raise _malformed("admin kids must be unique")
    threshold = doc["threshold"]
    if not _is_int(threshold) or not 1 <= threshold <= len(admins):
        raise _malformed("threshold must be an integer with 1 <= t <= number of admins")

    nodes_doc = doc["nodes"]
    if not isinstance(nodes_doc, list):
        raise _malformed("nodes must be a list")
    nodes = []
    for i, value in enumerate(nodes_doc):
        entry = _object(value, frozenset({"node", "name", "endpoint", "keys"}), f"nodes[{i}]")
        node = entry["node"]
        if not isinstance(node, str) or not NODE_ID.fullmatch(node):
            raise _malformed(f"nodes[{i}].node is not a node id")
        endpoint = _text(entry["endpoint"], f"nodes[{i}].endpoint")
        if not is_endpoint(endpoint):
            raise _malformed(
                f"nodes[{i}].endpoint must be an http(s) URL of a host, with an optional "
                "port and path (docs/trust-administration.md)"
            )
        if not isinstance(entry["keys"], list):
            raise _malformed(f"nodes[{i}].keys must be a list")
        keys = tuple(
            _parse_key(node, k, f"nodes[{i}].keys[{j}]") for j, k in enumerate(entry["keys"])
        )
        if {k.use for k in keys} != {"sig", "enc"}:  # §1: at least one of each
            raise _malformed(f"node {node} needs at least one sig and one enc key")
        nodes.append(NodeEntry(node, _text(entry["name"], f"nodes[{i}].name"), endpoint, keys))
    if len({n.node for n in nodes}) != len(nodes):
        raise _malformed("node ids must be unique")
    kids = [k.kid for n in nodes for k in n.keys]
    if len(set(kids)) != len(kids):
        raise _malformed("node key kids must be unique across the list")
    return _Contents(
        federation, version, issued_at, expires, prev, threshold, tuple(admins), tuple(nodes)
    )


def _signers(
    raw: bytes, signatures: Sequence[Mapping[str, str]], admins: Sequence[Admin]
) -> set[str]:
    """T2: kids of the distinct admins with a valid signature over L (others ignored)."""
    by_kid = {a.kid: a.pub for a in admins}
    message = SIGNING_PREFIX + raw
    valid: set[str] = set()
    for sig in signatures:
        kid = sig["kid"]
        if kid in valid or kid not in by_kid:
            continue
        if verify_signature(by_kid[kid], message, b64d(sig["sig"], length=SIGNATURE_BYTES)):
            valid.add(kid)
    return valid


def _require_threshold(
    raw: bytes,
    signatures: Sequence[Mapping[str, str]],
    admins: Sequence[Admin],
    threshold: int,
    whose: str,
) -> None:
    got = len(_signers(raw, signatures, admins))
    if got < threshold:
        raise TrustError(
            "trust-threshold",
            f"{got} valid signatures by distinct admins of {whose}, {threshold} needed",
        )


_CONSTRUCT = object()


def _not_the_anchor(raw: bytes) -> str:
    """Why a list is not the anchored version 1: when it says it is a later version (read
    only for this sentence, unverified), that a node starts from version 1."""
    try:
        version = _parse_list(raw).version
    except Exception:  # noqa: BLE001 - not a list at all: the plain sentence
        version = None
    if version is not None and version != 1:
        return (
            f"SHA-256 of the list is not the anchor: it is version {version}, and a node's "
            "first trust list is version 1, the one the anchor names; install version 1 "
            "first, then each later version in order"
        )
    return (
        "SHA-256 of the list is not the anchor; compare the anchor with the one the "
        "administrators published, and the file with the version 1 they signed"
    )


ISSUED_AHEAD_MOST = 86_400
"""How far after a node's clock a new list may be issued (T10): clocks differ by seconds,
not days."""


def require_issued_by(version: int, issued_at: int, now: int) -> None:
    """T10: refuse a list issued more than ``ISSUED_AHEAD_MOST`` after ``now``."""
    if issued_at > now + ISSUED_AHEAD_MOST:
        raise TrustError(
            "trust-time",
            f"version {version} is issued at {issued_at}, {(issued_at - now) // 3600} hours "
            "after this machine's clock: the clock of the machine that proposed it (or this "
            "one) is wrong; no version issued before it could follow it, so it is not "
            "installed: ask the administrators for a version proposed with a right clock",
        )


class TrustList:
    """One verified version of the trust list. Build it with ``from_anchor``, ``from_pinned``,
    ``verify_successor`` or ``verify_chain``; instances are immutable."""

    __slots__ = (
        "raw",
        "signatures",
        "version",
        "federation",
        "issued_at",
        "expires",
        "prev",
        "threshold",
        "admins",
        "nodes",
        "sha256",
        "_keys",
        "_by_node",
    )

    raw: bytes
    signatures: tuple[Mapping[str, str], ...]
    version: int
    federation: str
    issued_at: int
    expires: int
    prev: bytes | None
    threshold: int
    admins: tuple[Admin, ...]
    nodes: tuple[NodeEntry, ...]
    sha256: bytes
    _keys: TrustedKeys
    _by_node: dict[str, NodeEntry]

    def __init__(
        self,
        raw: bytes,
        signatures: tuple[Mapping[str, str], ...],
        contents: _Contents,
        *,
        _token: object = None,
    ) -> None:
        if _token is not _CONSTRUCT:
            raise TypeError("use TrustList.from_anchor / from_pinned / verify_successor")
        setattr_ = object.__setattr__
        setattr_(self, "raw", bytes(raw))
        setattr_(self, "signatures", signatures)
        for name, value in contents._asdict().items():
            setattr_(self, name, value)
        setattr_(self, "sha256", hashlib.sha256(raw).digest())
        setattr_(self, "_keys", TrustedKeys(k for n in contents.nodes for k in n.keys))
        setattr_(self, "_by_node", {n.node: n for n in contents.nodes})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("TrustList is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("TrustList is immutable")

    def __repr__(self) -> str:
        return (
            f"TrustList(federation={self.federation!r}, version={self.version}, "
            f"sha256={self.sha256.hex()[:16]}…)"
        )

    # -- constructors -------------------------------------------------------------------

    @classmethod
    def from_anchor(cls, wire: bytes, anchor_sha256: bytes, now: int) -> TrustList:
        """T1–T3: accept version 1, pinned out of band by SHA-256(L). Expiry is not fatal
        here (T9): the node walks forward from the anchor with ``verify_chain``."""
        del now  # the anchor is trusted by its hash, whatever its age
        if not isinstance(anchor_sha256, bytes) or len(anchor_sha256) != 32:
            raise ValueError("anchor_sha256 must be 32 bytes")
        raw, signatures = _parse_wire(wire)
        if not hmac.compare_digest(hashlib.sha256(raw).digest(), anchor_sha256):
            raise TrustError("trust-anchor-mismatch", _not_the_anchor(raw))
        contents = _parse_list(raw)
        if contents.version != 1:
            raise TrustError("trust-anchor-mismatch", "the anchor must be version 1")
        _require_threshold(raw, signatures, contents.admins, contents.threshold, "version 1")
        return cls(raw, signatures, contents, _token=_CONSTRUCT)

    @classmethod
    def from_pinned(cls, wire: bytes, sha256: bytes) -> TrustList:
        """Reload a list this node verified before (any version) from its own storage:
        SHA-256(L) must equal the hash the node kept, L must parse (T1) and carry its own
        threshold (T2). Never refused for expiry (T9)."""
        if not isinstance(sha256, bytes) or len(sha256) != 32:
            raise ValueError("sha256 must be 32 bytes")
        raw, signatures = _parse_wire(wire)
        if not hmac.compare_digest(hashlib.sha256(raw).digest(), sha256):
            raise TrustError("trust-anchor-mismatch", "SHA-256 of the list is not the pinned one")
        contents = _parse_list(raw)
        _require_threshold(
            raw, signatures, contents.admins, contents.threshold, f"version {contents.version}"
        )
        return cls(raw, signatures, contents, _token=_CONSTRUCT)

    def verify_successor(self, wire: bytes, now: int) -> TrustList:
        """T1, T4–T9: verify version N+1 against this version N and return it."""
        return self._successor(wire, now, check_expiry=True)

    def verify_chain(
        self, wires: Sequence[bytes], now: int, *, installed: bool = False
    ) -> TrustList:
        """Walk versions N+1, N+2, ... in order (T4–T8 at each step); only the last one must
        not be expired (T9), since superseded versions may be. Returns the last version.

        ``installed=True`` re-verifies versions the node installed earlier: then even the
        last may have expired since, which freezes sending (T9) but must not stop the node
        from loading what it has and raising the alarm."""
        current = self
        for i, wire in enumerate(wires):
            last = i == len(wires) - 1
            current = current._successor(wire, now, check_expiry=last and not installed)
        return current

    def _successor(self, wire: bytes, now: int, *, check_expiry: bool) -> TrustList:
        raw, signatures = _parse_wire(wire)  # T1
        new = _parse_list(raw)
        # T4: version must be exactly N+1.
        if new.version <= self.version:
            raise TrustError(
                "trust-rollback", f"version {new.version} is not newer than {self.version}"
            )
        if new.version != self.version + 1:
            raise TrustError(
                "trust-rollback",
                f"version {new.version} skips versions after {self.version}; walk the chain",
            )
        # T5: authenticated by the admins we already trust.
        _require_threshold(
            raw, signatures, self.admins, self.threshold, f"the current version {self.version}"
        )
        # T6: chained to this version, in the same federation.
        if new.prev is None or not hmac.compare_digest(new.prev, self.sha256):
            raise TrustError("trust-chain", f"prev is not the hash of version {self.version}")
        if new.federation != self.federation:
            raise TrustError("trust-chain", "the federation name changed")
        # T7: issued_at does not go back.
        if new.issued_at < self.issued_at:
            raise TrustError("trust-time", "issued_at is earlier than the current version's")
        # T8: also authenticated by its own admins.
        _require_threshold(
            raw, signatures, new.admins, new.threshold, f"the new version {new.version}"
        )
        # T9: a new list must not be expired already.
        if check_expiry and now >= new.expires:
            raise TrustError("trust-expired", f"version {new.version} expired at {new.expires}")
        # T10: nor issued ahead of time.
        if check_expiry:
            require_issued_by(new.version, new.issued_at, now)
        return TrustList(raw, signatures, new, _token=_CONSTRUCT)

    # -- queries ------------------------------------------------------------------------

    @property
    def keys(self) -> TrustedKeys:
        return self._keys

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(n.node for n in self.nodes)

    def node(self, node_id: str) -> NodeEntry | None:
        """The listed node ``node_id`` (name, endpoint, keys), or None."""
        return self._by_node.get(node_id)

    def is_expired(self, now: int) -> bool:
        """T9: an expired list freezes sending; the node keeps it and raises an alarm."""
        return now >= self.expires

    def to_wire(self) -> bytes:
        """The §5 wire form (xb1-json), as served at ``GET /xb1/trust-list``."""
        return assemble(self.raw, self.signatures)


# -- builders (admins and tests) ----------------------------------------------------------


def key_entry(
    pub: bytes,
    use: KeyUse,
    *,
    not_before: int = 0,
    not_after: int = MAX_TIME,
    status: KeyStatus = "active",
    revoked_at: int | None = None,
) -> dict[str, Any]:
    """A §5 key object for a raw public key (checked by ``NodeKey``; the node id is not
    part of the key object, so a placeholder is used)."""
    return NodeKey(
        "XX", key_id(pub), use, pub, not_before, not_after, status, revoked_at
    ).to_entry()


def node_entry(
    node: str,
    name: str,
    endpoint: str,
    sig: SigningKeyPair | bytes,
    enc: EncryptionKeyPair | bytes,
    not_before: int = 0,
    not_after: int = MAX_TIME,
) -> dict[str, Any]:
    """A §5 node object with one active sig key and one active enc key."""
    sig_pub = sig.public if isinstance(sig, SigningKeyPair) else sig
    enc_pub = enc.public if isinstance(enc, EncryptionKeyPair) else enc
    return {
        "node": node,
        "name": name,
        "endpoint": endpoint,
        "keys": [
            key_entry(sig_pub, "sig", not_before=not_before, not_after=not_after),
            key_entry(enc_pub, "enc", not_before=not_before, not_after=not_after),
        ],
    }


def admin_entry(admin: SigningKeyPair | bytes, label: str) -> dict[str, str]:
    """A §5 admin object."""
    pub = admin.public if isinstance(admin, SigningKeyPair) else admin
    return {"kid": key_id(pub), "pub": b64e(pub), "label": label}


def build_list(
    *,
    federation: str,
    version: int,
    issued_at: int,
    expires: int,
    prev: bytes | None,
    threshold: int,
    admins: list[dict[str, Any]],
    nodes: list[dict[str, Any]],
    validate: bool = True,
) -> bytes:
    """Canonical L (§5). With ``validate`` (the default) L is checked by the T1 parser so a
    builder cannot emit a list nodes would refuse; tests of the verifier pass False."""
    doc = {
        "suite": SUITE,
        "federation": federation,
        "version": version,
        "issued_at": issued_at,
        "expires": expires,
        "prev": None if prev is None else b64e(prev),
        "threshold": threshold,
        "admins": admins,
        "nodes": nodes,
    }
    raw = xb1json.dumps(doc)
    if validate:
        _parse_list(raw)
    return raw


def sign_list(raw: bytes, admin: SigningKeyPair) -> dict[str, str]:
    """T2: one admin's signature ``{"kid", "sig"}`` over ``"xb1:trust\\0" || L``."""
    return {"kid": admin.kid, "sig": b64e(admin.sign(SIGNING_PREFIX + raw))}


def assemble(raw: bytes, signatures: Iterable[Mapping[str, str]]) -> bytes:
    """The §5 wire form ``{"list": B64(L), "signatures": [...]}`` as xb1-json."""
    return xb1json.dumps({"list": b64e(raw), "signatures": [dict(s) for s in signatures]})
