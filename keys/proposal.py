"""Offline administration of the federation trust list (PROTOCOL §5): proposals and admin keys.

Administrators of each state bootstrap the federation, add and remove states, rotate and
revoke keys, on their own machines and with no central authority (THREATS: one rogue
federation admin). This module owns that workflow; ``gateway.cli_admin`` only prints it.

* An ``AdminKey`` is an Ed25519 pair and a label, sealed at rest with ``keys.sealed`` under
  the administrator's passphrase; its secret JSON is ``{"admin": LABEL, "kid", "seed"}``, so
  a node key ring can never be loaded as an admin key or the other way round.
* A proposal is the exact bytes L of the proposed version plus the signatures collected so
  far, in the §5 wire form itself: once it carries enough signatures the proposal file IS
  the trust list file nodes install. ``bootstrap`` makes version 1, ``propose`` version N+1
  from the current version N by a sequence of checked changes (``AddNode``, ``RetireKey``,
  ...). Both emit only lists the T1 parser of ``keys.trustlist`` accepts.
* ``diff`` shows every difference between version N and a proposal, with the fingerprint
  of every added key and admin, so administrators can compare it by phone. It is the
  security check before signing: it covers every member of L, not only what ``propose``
  can change, because a proposal may come from anyone.
* ``sign`` adds one admin's signature (idempotent), ``merge`` unites copies signed on
  separate machines (all must carry the identical L), ``status`` counts valid signatures
  by distinct admins of N and of N+1 exactly as a node will (T2, T5, T8) and runs the
  node's own verifier for the verdict.

Errors are ``ProposalError`` (a ``TrustError``) with stable ``proposal-...`` codes:
``bad-entry``, ``unknown-node``, ``duplicate-node``, ``unknown-key``, ``duplicate-key``,
``key-status``, ``key-time``, ``last-key``, ``unknown-admin``, ``duplicate-admin``,
``not-admin``, ``threshold``, ``expires``, ``time``, ``not-successor``, ``mismatch``,
``too-many-signatures``. A file that is not a §5 wire form at all is ``trust-malformed``.

Hazards: an administrator's copy of the current list (``read_current``) is only checked for
its own signatures, not walked from the anchor. That is enough for ``diff``: a proposal's
``prev`` names the hash of the list it was diffed against, and nodes refuse it unless that
is the version they hold; administrators compare the SHA-256 by phone all the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from schemas import xb1json
from schemas.b64 import b64d, b64e
from schemas.errors import WireFormatError

from .fingerprint import fingerprint
from .keypair import KEY_BYTES, SigningKeyPair, key_id
from .sealed import (
    MAX_FILE_BYTES,
    MEMLIMIT_MODERATE,
    OPSLIMIT_MODERATE,
    KeyFileError,
    open_keys,
    write_key_file,
)

# The proposal format is the trust list format: parse it with the very T1 parser and count
# signatures with the very T2 rule that nodes use, so a proposal that passes here passes there.
from .trustlist import (
    ISSUED_AHEAD_MOST,
    MAX_SIGNATURES,
    MAX_TEXT,
    MAX_TIME,
    NODE_ID,
    Admin,
    NodeEntry,
    NodeKey,
    TrustError,
    TrustList,
    _parse_key,
    _parse_list,
    _parse_wire,
    _signers,
    assemble,
    build_list,
    is_endpoint,
    require_issued_by,
    sign_list,
)

DEFAULT_OVERLAP = 14 * 86400  # a retired key stays usable this long by default
_ADMIN_SECRET_MEMBERS = frozenset({"admin", "kid", "seed"})


class ProposalError(TrustError):
    """A proposal cannot be built, signed or merged as asked (codes: module docstring)."""


def _error(code: str, message: str) -> ProposalError:
    return ProposalError(f"proposal-{code}", message)


def entry_text(value: object, what: str) -> str:
    """A name or label of a trust list entry (also checked by `gateway keys entry` and
    `keys rotate`). Names and labels are read aloud and printed in diffs: no control or
    format characters (a newline or a bidi override in a name could forge a diff line)."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT:
        raise _error("bad-entry", f"{what} must be a non-empty text of at most {MAX_TEXT} chars")
    if not value.isprintable():
        raise _error("bad-entry", f"{what} {value!r} contains control or invisible characters")
    return value


def federation_name(value: object) -> str:
    """A new federation's name: an entry text that can also name every node's audit log,
    ``xb1-audit/<federation>/<node>``, which is a C2SP signed-note key name (no spaces,
    no "+"): with one, no node of the federation could sign a checkpoint."""
    name = entry_text(value, "federation name")
    if "+" in name or any(c.isspace() for c in name):
        raise _error(
            "bad-entry",
            f"federation name {name!r} must have no spaces and no '+': it names every "
            f"node's audit log (xb1-audit/{name}/NODE), a signed-note key name; e.g. "
            "central-asia",
        )
    return name


def entry_endpoint(value: object, what: str) -> str:
    """A node's endpoint in a trust list entry: an http(s) URL (``is_endpoint``) of at
    most ``MAX_TEXT`` characters."""
    if not isinstance(value, str) or len(value) > MAX_TEXT or not is_endpoint(value):
        raise _error("bad-entry", f"{what} {value!r} is not an http(s) URL")
    return value


def _json_kind(value: object) -> str:
    """What a JSON value is, for an error about a file that holds the wrong kind."""
    if isinstance(value, bool) or value is None:
        return f"the JSON value {'null' if value is None else str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _as_object(value: object, what: str, members: str) -> dict[str, Any]:
    """A JSON object given to a change (any ``Mapping``) as a dict to check; a scalar or a
    list, as a file holding ``"x"`` or ``5`` reads, is ``proposal-bad-entry``."""
    if not isinstance(value, Mapping):
        raise _error(
            "bad-entry", f"{what} must be a JSON object with {members}, not {_json_kind(value)}"
        )
    return dict(value)


@contextlib.contextmanager
def _bad_entry(what: str) -> Iterator[None]:
    """Turn the T1 parser's ``trust-malformed`` into ``proposal-bad-entry`` for an input."""
    try:
        yield
    except ProposalError:
        raise
    except TrustError as e:
        raise _error("bad-entry", f"{what}: {e.message}") from e
    except (ValueError, TypeError, KeyError) as e:  # WireFormatError is a ValueError
        raise _error("bad-entry", f"{what}: {e}") from e


# -- admin keys ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AdminKey:
    """One administrator's signing key and label (``admins[]`` of §5)."""

    label: str
    pair: SigningKeyPair

    def __post_init__(self) -> None:
        if not isinstance(self.pair, SigningKeyPair):
            raise TypeError("an admin key is an Ed25519 SigningKeyPair")
        entry_text(self.label, "admin label")

    @classmethod
    def generate(cls, label: str) -> AdminKey:
        return cls(label, SigningKeyPair.generate())

    @property
    def kid(self) -> str:
        return self.pair.kid

    @property
    def public(self) -> bytes:
        return self.pair.public

    def entry(self) -> dict[str, str]:
        """The public §5 admin object ``{"kid", "pub", "label"}`` (the ``.pub.json`` file)."""
        return {"kid": self.kid, "pub": b64e(self.public), "label": self.label}

    def to_secret_json(self) -> dict[str, str]:
        """The secret object sealed in the key file. Handle with care."""
        return {"admin": self.label, "kid": self.kid, "seed": b64e(self.pair.seed)}

    @classmethod
    def from_secret_json(cls, obj: object) -> AdminKey:
        """Rebuild from ``to_secret_json``; raises ``KeyFileError`` (``key-file-malformed``)."""
        if not isinstance(obj, dict) or set(obj) != _ADMIN_SECRET_MEMBERS:
            raise KeyFileError(
                "key-file-malformed",
                "not an administrator key file (a node's key file cannot sign trust lists)",
            )
        try:
            pair = SigningKeyPair(b64d(obj["seed"], length=KEY_BYTES, what="seed"))
            if pair.kid != obj["kid"]:
                raise ValueError("the kid does not match the key")
            return cls(obj["admin"], pair)
        except (ValueError, TypeError, TrustError) as e:  # WireFormatError is a ValueError
            raise KeyFileError("key-file-malformed", f"bad administrator key: {e}") from e

    def save(
        self,
        path: str | os.PathLike[str],
        passphrase: str,
        *,
        opslimit: int = OPSLIMIT_MODERATE,
        memlimit: int = MEMLIMIT_MODERATE,
    ) -> None:
        """Write the key sealed under ``passphrase`` (mode 0600, atomic). Never unsealed."""
        write_key_file(
            path, self.to_secret_json(), passphrase, opslimit=opslimit, memlimit=memlimit
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: str | None) -> AdminKey:
        """Open a key file written by ``save``; raises ``KeyFileError``. An unsealed file is
        refused: an administrator key is never stored in clear."""
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        try:
            sealed = xb1json.loads(data).get("sealed") is True
        except (WireFormatError, AttributeError):
            sealed = True  # not JSON, or not an object: open_keys names the problem
        if not sealed:
            raise KeyFileError(
                "key-file-malformed", f"{os.fspath(path)} is not sealed: admin keys always are"
            )
        return cls.from_secret_json(open_keys(data, passphrase))

    def __repr__(self) -> str:
        return f"AdminKey(label={self.label!r}, kid={self.kid})"


def admin_from_entry(entry: object, what: str = "admin") -> dict[str, str]:
    """Check a public admin object ``{"kid", "pub", "label"}`` (a keygen ``.pub.json``)."""
    entry = _as_object(entry, what, "exactly kid, pub and label")
    if set(entry) != {"kid", "pub", "label"}:
        raise _error("bad-entry", f"{what} must be an object with exactly kid, pub and label")
    with _bad_entry(what):
        pub = b64d(entry["pub"], length=KEY_BYTES, what="pub")
    if entry["kid"] != key_id(pub):
        raise _error("bad-entry", f"{what}: kid is not the key id of its public key")
    return {"kid": entry["kid"], "pub": entry["pub"], "label": entry_text(entry["label"], what)}


def node_from_entry(entry: object, what: str = "node entry") -> dict[str, Any]:
    """Check a §5 node object as ``gateway keys entry`` prints it; keys must be active."""
    entry = _as_object(entry, what, "exactly node, name, endpoint and keys")
    if set(entry) != {"node", "name", "endpoint", "keys"}:
        raise _error(
            "bad-entry", f"{what} must be an object with exactly node, name, endpoint and keys"
        )
    node = entry["node"]
    if not isinstance(node, str) or not NODE_ID.fullmatch(node):
        raise _error("bad-entry", f"{what}: {node!r} is not a node id like KZ or KZ-MVD")
    if not isinstance(entry["keys"], list) or not entry["keys"]:
        raise _error("bad-entry", f"{what}: keys must be a non-empty list")
    keys = [key_from_entry(node, k, f"{what} key {i}") for i, k in enumerate(entry["keys"])]
    if len({k["kid"] for k in keys}) != len(keys):
        raise _error("duplicate-key", f"{what} lists one key twice")
    for use in ("sig", "enc"):
        if not any(k["use"] == use for k in keys):
            raise _error("bad-entry", f"{what}: node {node} needs an active {use} key")
    return {
        "node": node,
        "name": entry_text(entry["name"], f"{what} name"),
        "endpoint": entry_endpoint(entry["endpoint"], f"{what} endpoint"),
        "keys": keys,
    }


def key_from_entry(node: str, entry: object, what: str = "key") -> dict[str, Any]:
    """Check a §5 key object to be added to ``node``; a new key must be active."""
    entry = _as_object(entry, what, "kid, use, pub, not_before, not_after and status")
    with _bad_entry(what):
        key = _parse_key(node, entry, what)
    if key.status != "active":
        raise _error(
            "key-status", f"{what} ({key.kid}) is {key.status}; only active keys can be added"
        )
    return key.to_entry()


# -- changes -------------------------------------------------------------------------------


class _Draft:
    """The mutable admins, threshold and nodes of the version being proposed."""

    def __init__(
        self,
        admins: list[dict[str, str]],
        threshold: int,
        nodes: list[dict[str, Any]],
        issued_at: int,
    ) -> None:
        self.admins = admins
        self.threshold = threshold
        self.nodes = nodes
        self.issued_at = issued_at
        self.status_changed: set[str] = set()  # kids retired or revoked by this draft

    @classmethod
    def of(cls, trust_list: TrustList, issued_at: int) -> _Draft:
        return cls(
            [{"kid": a.kid, "pub": b64e(a.pub), "label": a.label} for a in trust_list.admins],
            trust_list.threshold,
            [_node_object(n) for n in trust_list.nodes],
            issued_at,
        )

    def node(self, node_id: str) -> dict[str, Any]:
        for node in self.nodes:
            if node["node"] == node_id:
                return node
        raise _error("unknown-node", f"node {node_id!r} is not on the trust list")

    def key(self, kid: str) -> tuple[dict[str, Any], dict[str, Any]]:
        for node in self.nodes:
            for key in node["keys"]:
                if key["kid"] == kid:
                    return node, key
        raise _error("unknown-key", f"no node key with kid {kid!r} is on the trust list")

    def has_kid(self, kid: str) -> bool:
        return any(k["kid"] == kid for n in self.nodes for k in n["keys"])


def _node_object(node: NodeEntry) -> dict[str, Any]:
    return {
        "node": node.node,
        "name": node.name,
        "endpoint": node.endpoint,
        "keys": [k.to_entry() for k in node.keys],
    }


class Change(Protocol):
    """One checked edit of the draft; raises ``ProposalError``."""

    def apply(self, draft: _Draft) -> None: ...


@dataclass(frozen=True)
class AddNode:
    """Add a state's node from the JSON its operator printed with ``gateway keys entry``."""

    entry: Mapping[str, Any]

    def apply(self, draft: _Draft) -> None:
        node = node_from_entry(self.entry)
        if any(n["node"] == node["node"] for n in draft.nodes):
            raise _error("duplicate-node", f"node {node['node']} is already on the trust list")
        for key in node["keys"]:
            if draft.has_kid(key["kid"]):
                raise _error("duplicate-key", f"key {key['kid']} is already on the trust list")
        draft.nodes.append(node)


@dataclass(frozen=True)
class RemoveNode:
    node: str

    def apply(self, draft: _Draft) -> None:
        node = draft.node(self.node)
        changed = sorted(k["kid"] for k in node["keys"] if k["kid"] in draft.status_changed)
        if changed:
            raise _error(
                "key-status",
                f"keys {changed} of {self.node} are retired or revoked by this same proposal: "
                "publish that version first (nodes hold what a revoked key signed only when "
                "a version lists it revoked), and remove the node in a later one",
            )
        draft.nodes.remove(node)


@dataclass(frozen=True)
class AddKey:
    """Add one new active key (a §5 key object) to a listed node."""

    node: str
    key: Mapping[str, Any]

    def apply(self, draft: _Draft) -> None:
        node = draft.node(self.node)
        key = key_from_entry(self.node, self.key, f"new key of {self.node}")
        if draft.has_kid(key["kid"]):
            raise _error("duplicate-key", f"key {key['kid']} is already on the trust list")
        node["keys"].append(key)


def _require_another_active(node: dict[str, Any], key: dict[str, Any], doing: str) -> None:
    others = [
        k
        for k in node["keys"]
        if k is not key and k["use"] == key["use"] and k["status"] == "active"
    ]
    if not others:
        raise _error(
            "last-key",
            f"{doing} {key['kid']} would leave {node['node']} without an active {key['use']} "
            "key; add its successor first (in this proposal or an earlier one)",
        )


@dataclass(frozen=True)
class RetireKey:
    """Planned rotation: the key stays usable for messages dated up to ``not_after``
    (default: the proposal's issue time plus ``overlap``, never later than it was)."""

    kid: str
    not_after: int | None = None
    overlap: int = DEFAULT_OVERLAP

    def apply(self, draft: _Draft) -> None:
        node, key = draft.key(self.kid)
        if key["status"] != "active":
            raise _error("key-status", f"key {self.kid} is {key['status']}, not active")
        _require_another_active(node, key, "retiring")
        for name, value in (("overlap", self.overlap), ("not_after", self.not_after)):
            if value is None and name == "not_after":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIME:
                raise _error("key-time", f"{name} must be a whole number of seconds, 0 to 2^53-1")
        if self.not_after is None:
            until = max(key["not_before"], min(key["not_after"], draft.issued_at + self.overlap))
        else:
            until = self.not_after
            if not key["not_before"] <= until <= key["not_after"]:
                raise _error(
                    "key-time",
                    f"not_after {until} must lie within the key's validity "
                    f"[{key['not_before']}, {key['not_after']}]: retiring cannot extend a key",
                )
        key["status"] = "retired"
        key["not_after"] = until
        draft.status_changed.add(self.kid)


@dataclass(frozen=True)
class RevokeKey:
    """Compromise: the key is refused for everything from ``revoked_at`` on (default: the
    proposal's issue time). Allowed on a node's last active key: safety first. An already
    revoked key can only be revoked earlier."""

    kid: str
    revoked_at: int | None = None

    def apply(self, draft: _Draft) -> None:
        _, key = draft.key(self.kid)
        at = draft.issued_at if self.revoked_at is None else self.revoked_at
        if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at <= MAX_TIME:
            raise _error("key-time", "revoked_at must be an integer time in [0, 2^53-1]")
        if key["status"] == "revoked":
            since = key.get("revoked_at")  # optional in §5: none means for everything
            if since is None:
                raise _error(
                    "key-status",
                    f"key {self.kid} is already revoked without a time (refused for "
                    "everything); giving it one would make it usable again for older messages",
                )
            if at >= since:
                raise _error(
                    "key-status",
                    f"key {self.kid} is already revoked at {since}; it can only be revoked earlier",
                )
        key["status"] = "revoked"
        key["revoked_at"] = at
        draft.status_changed.add(self.kid)


@dataclass(frozen=True)
class RemoveKey:
    """Drop a retired or revoked key from the list (housekeeping once it is of no use)."""

    kid: str

    def apply(self, draft: _Draft) -> None:
        node, key = draft.key(self.kid)
        if key["status"] == "active":
            raise _error(
                "key-status", f"key {self.kid} is active: retire or revoke it before removing it"
            )
        if not any(k is not key and k["use"] == key["use"] for k in node["keys"]):
            raise _error("last-key", f"{node['node']} must keep at least one {key['use']} key (§5)")
        if self.kid in draft.status_changed:
            # A list that never shows the key revoked would make no node hold what it
            # signed (gateway/quarantine.py), and the diff would show an active key go.
            raise _error(
                "key-status",
                f"key {self.kid} is {key['status']} by this same proposal: publish that "
                "version first (nodes hold what a revoked key signed only when a version "
                "lists it revoked), and remove the key in a later one",
            )
        node["keys"].remove(key)


@dataclass(frozen=True)
class SetEndpoint:
    node: str
    endpoint: str

    def apply(self, draft: _Draft) -> None:
        draft.node(self.node)["endpoint"] = entry_endpoint(
            self.endpoint, f"endpoint of {self.node}"
        )


@dataclass(frozen=True)
class SetName:
    node: str
    name: str

    def apply(self, draft: _Draft) -> None:
        draft.node(self.node)["name"] = entry_text(self.name, f"name of {self.node}")


@dataclass(frozen=True)
class AddAdmin:
    """Add an administrator from the public file ``gateway admin keygen`` wrote."""

    entry: Mapping[str, Any]

    def apply(self, draft: _Draft) -> None:
        admin = admin_from_entry(self.entry)
        if any(a["kid"] == admin["kid"] for a in draft.admins):
            raise _error("duplicate-admin", f"admin {admin['kid']} is already on the trust list")
        draft.admins.append(admin)


@dataclass(frozen=True)
class RemoveAdmin:
    kid: str

    def apply(self, draft: _Draft) -> None:
        for admin in draft.admins:
            if admin["kid"] == self.kid:
                draft.admins.remove(admin)
                return
        raise _error("unknown-admin", f"no admin with kid {self.kid!r} is on the trust list")


@dataclass(frozen=True)
class SetThreshold:
    threshold: int

    def apply(self, draft: _Draft) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int):
            raise _error("threshold", "the threshold must be an integer")
        if self.threshold < 1:
            raise _error("threshold", "the threshold must be at least 1")
        draft.threshold = self.threshold


# -- building proposals ----------------------------------------------------------------------


def _finish(
    draft: _Draft, *, federation: str, version: int, expires: int, prev: bytes | None
) -> bytes:
    """Check what the single changes cannot, build L (T1-checked) and wrap it unsigned."""
    if not draft.admins:
        raise _error("threshold", "the list needs at least one admin")
    if draft.threshold > len(draft.admins):
        raise _error(
            "threshold",
            f"threshold {draft.threshold} is more than the {len(draft.admins)} admins listed",
        )
    if isinstance(expires, bool) or not isinstance(expires, int) or expires > MAX_TIME:
        raise _error("expires", "expires must be an integer time")
    if expires <= draft.issued_at:
        raise _error(
            "expires",
            f"the list would expire ({expires}) before it is issued ({draft.issued_at}); "
            "give a later expiry",
        )
    raw = build_list(
        federation=federation,
        version=version,
        issued_at=draft.issued_at,
        expires=expires,
        prev=prev,
        threshold=draft.threshold,
        admins=draft.admins,
        nodes=draft.nodes,
    )
    return assemble(raw, [])


def _check_time(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIME:
        raise _error("time", f"{what} must be an integer time in [0, 2^53-1]")
    return value


def bootstrap(
    federation: str,
    admins: Sequence[Mapping[str, Any]],
    threshold: int,
    nodes: Sequence[Mapping[str, Any]],
    issued_at: int,
    expires: int,
) -> bytes:
    """An unsigned proposal of version 1: admins from their public files, nodes from their
    operators' ``gateway keys entry`` output."""
    draft = _Draft([], 1, [], _check_time(issued_at, "issued_at"))
    changes: list[Change] = [AddAdmin(a) for a in admins]
    changes += [AddNode(n) for n in nodes]
    changes.append(SetThreshold(threshold))
    for change in changes:
        change.apply(draft)
    return _finish(
        draft,
        federation=federation_name(federation),
        version=1,
        expires=expires,
        prev=None,
    )


def propose(
    current: TrustList,
    *,
    changes: Sequence[Change] = (),
    issued_at: int,
    expires: int | None = None,
) -> bytes:
    """An unsigned proposal of version N+1 of ``current`` with ``changes`` applied in order;
    ``expires`` defaults to the current expiry."""
    if _check_time(issued_at, "issued_at") < current.issued_at:
        raise _error(
            "time",
            f"issued_at {issued_at} is earlier than version {current.version}'s "
            f"({current.issued_at}); nodes would refuse it (§5 T7)",
        )
    draft = _Draft.of(current, issued_at)
    for change in changes:
        change.apply(draft)
    return _finish(
        draft,
        federation=current.federation,
        version=current.version + 1,
        expires=current.expires if expires is None else expires,
        prev=current.sha256,
    )


@dataclass(frozen=True)
class Proposal:
    """A parsed (T1) but not yet trusted proposal: L and the signatures collected."""

    raw: bytes
    signatures: tuple[Mapping[str, str], ...]
    federation: str
    version: int
    issued_at: int
    expires: int
    prev: bytes | None
    threshold: int
    admins: tuple[Admin, ...]
    nodes: tuple[NodeEntry, ...]

    @classmethod
    def from_wire(cls, wire: bytes) -> Proposal:
        raw, signatures = _parse_wire(wire)
        return cls(raw, signatures, **_parse_list(raw)._asdict())

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    def to_wire(self) -> bytes:
        return assemble(self.raw, self.signatures)


def read_current(wire: bytes) -> TrustList:
    """An administrator's copy of the current version: it must parse and carry its own
    threshold of signatures (see the module's hazards)."""
    raw, _ = _parse_wire(wire)
    return TrustList.from_pinned(wire, hashlib.sha256(raw).digest())


def check_successor(current: TrustList | None, proposal: Proposal) -> None:
    """The proposal is version 1 (no current), or N+1 of ``current`` by version, ``prev``
    and federation (T4, T6): otherwise a diff against ``current`` would mean nothing."""
    if current is None:
        if proposal.version != 1:
            raise _error(
                "not-successor",
                f"the proposal is version {proposal.version}; give the current trust list "
                "it replaces to compare with",
            )
        return
    if proposal.version != current.version + 1:
        raise _error(
            "not-successor",
            f"the proposal is version {proposal.version}, the current list is version "
            f"{current.version}: it must be version {current.version + 1}",
        )
    if proposal.prev != current.sha256 or proposal.federation != current.federation:
        raise _error(
            "not-successor",
            f"the proposal does not follow this version {current.version} (its prev is the "
            "hash of another list): get the current list the federation's nodes hold",
        )


# -- diff ----------------------------------------------------------------------------------


def when(t: int) -> str:
    """A §5 time for people: UTC date and time, or "no end" for the largest time."""
    if t >= MAX_TIME:
        return "no end"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def shown(text: str) -> str:
    """Text from a proposal as printed: quoted and escaped if it could forge a line."""
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def quoted(text: str) -> str:
    """A name or label from a proposal as a change line prints it: always quoted (and
    escaped), after the kid and fingerprint it belongs to, so that whatever it holds
    (another admin's kid and fingerprint, an endpoint) cannot pass for them."""
    return repr(text)


def _key_line(node: str, key: NodeKey) -> str:
    validity = f"from {when(key.not_before)} until {when(key.not_after)}"
    status = key.status + (f" {_revoked_since(key)}" if key.status == "revoked" else "")
    return (
        f"+ {node} key {key.kid} {key.use} {status}, {validity} "
        f"(fingerprint {fingerprint(key.pub)})"
    )


def _revoked_since(key: NodeKey) -> str:
    if key.revoked_at is None:  # optional in §5
        return "without a time (refused for everything)"
    return f"at {when(key.revoked_at)}"


def _key_changes(old: NodeKey, new: NodeKey) -> list[str]:
    parts = []
    if old.use != new.use:
        parts.append(f"use {old.use} → {new.use}")
    if old.status != new.status:
        status = f"{old.status} → {new.status}"
        if new.status == "revoked":
            status += f" {_revoked_since(new)}"
        parts.append(status)
    elif old.revoked_at is not None and new.revoked_at is not None:
        if old.revoked_at != new.revoked_at:
            parts.append(f"revoked at {when(old.revoked_at)} → {when(new.revoked_at)}")
    elif old.revoked_at != new.revoked_at:
        parts.append(f"revoked {_revoked_since(old)} → {_revoked_since(new)}")
    if old.not_before != new.not_before:
        parts.append(f"not_before {when(old.not_before)} → {when(new.not_before)}")
    if old.not_after != new.not_after:
        parts.append(f"not_after {when(old.not_after)} → {when(new.not_after)}")
    return parts


def _node_lines(old: NodeEntry | None, new: NodeEntry | None) -> list[str]:
    if new is None:
        assert old is not None
        return [f"- node {old.node} {shown(old.endpoint)} {quoted(old.name)}"]
    if old is None:
        lines = [f"+ node {new.node} {shown(new.endpoint)} {quoted(new.name)}"]
        return lines + [_key_line(new.node, k) for k in new.keys]
    lines = []
    if old.name != new.name:
        lines.append(f"~ {new.node} name {quoted(old.name)} → {quoted(new.name)}")
    if old.endpoint != new.endpoint:
        lines.append(f"~ {new.node} endpoint {shown(old.endpoint)} → {shown(new.endpoint)}")
    old_keys = {k.kid: k for k in old.keys}
    new_keys = {k.kid: k for k in new.keys}
    for kid, key in old_keys.items():
        if kid not in new_keys:
            lines.append(f"- {new.node} key {kid} {key.use} {key.status}")
        elif parts := _key_changes(key, new_keys[kid]):
            lines.append(f"~ {new.node} key {kid} {key.use}: {'; '.join(parts)}")
    lines += [_key_line(new.node, k) for kid, k in new_keys.items() if kid not in old_keys]
    return lines


def _warnings(new: Proposal | TrustList, now: int | None = None) -> list[str]:
    lines = []
    at = int(time.time()) if now is None else now
    if new.issued_at > at + ISSUED_AHEAD_MOST:
        lines.append(
            f"! issued {when(new.issued_at)}, more than a day after this machine's clock: "
            "nodes refuse it (trust-time), and would refuse every version issued before that "
            "date after it; check the clock of the machine that proposed it"
        )
    for node in new.nodes:
        for use in ("sig", "enc"):
            if not any(k.use == use and k.status == "active" for k in node.keys):
                lines.append(
                    f"! {node.node} has no active {use} key: it cannot "
                    f"{'sign' if use == 'sig' else 'receive'} until a new key is listed"
                )
        if node.endpoint.startswith("http://"):
            lines.append(
                f"! {node.node} endpoint is plain http://: nodes refuse it unless "
                "allow_insecure_http is set (tests only)"
            )
    return lines


def diff(old: TrustList | None, new_raw: bytes, now: int | None = None) -> list[str]:
    """Every difference between version N (``old``; None for a bootstrap) and the proposed
    L, one line each: ``+`` added, ``-`` removed, ``~`` changed, ``!`` warning. Added keys
    and admins carry their full fingerprint, to be compared by phone. ``now``: this
    machine's clock (the issue time is judged against it)."""
    new = Proposal.from_wire(assemble(new_raw, []))
    check_successor(old, new)
    lines: list[str] = []
    if old is None:
        lines.append(f"+ federation {shown(new.federation)} version 1, expires {when(new.expires)}")
        lines.append(f"+ threshold {new.threshold} of {len(new.admins)} admins")
        old_admins: dict[str, Admin] = {}
        old_nodes: dict[str, NodeEntry] = {}
    else:
        if old.expires != new.expires:
            lines.append(f"~ expires {when(old.expires)} → {when(new.expires)}")
        if old.threshold != new.threshold:
            lines.append(f"~ threshold {old.threshold} → {new.threshold}")
        old_admins = {a.kid: a for a in old.admins}
        old_nodes = {n.node: n for n in old.nodes}
    new_admins = {a.kid: a for a in new.admins}
    for kid, admin in old_admins.items():
        if kid not in new_admins:
            lines.append(f"- admin {kid} {quoted(admin.label)}")
        elif admin.label != new_admins[kid].label:
            lines.append(
                f"~ admin {kid} label {quoted(admin.label)} → {quoted(new_admins[kid].label)}"
            )
    for kid, admin in new_admins.items():
        if kid not in old_admins:
            lines.append(
                f"+ admin {kid} (fingerprint {fingerprint(admin.pub)}) {quoted(admin.label)}"
            )
    if old is not None and len(old.admins) != len(new.admins):
        lines.append(f"~ admins {len(old.admins)} → {len(new.admins)}")
    new_nodes = {n.node: n for n in new.nodes}
    for node_id in [*old_nodes, *(n for n in new_nodes if n not in old_nodes)]:
        lines += _node_lines(old_nodes.get(node_id), new_nodes.get(node_id))
    if old is not None and len(lines) == 0:
        lines.append("= no change to admins, threshold, expiry or nodes")
    return lines + _revocations_undone(old_nodes, new_nodes) + _warnings(new, now)


def _revocations_undone(
    old_nodes: Mapping[str, NodeEntry], new_nodes: Mapping[str, NodeEntry]
) -> list[str]:
    """Warnings for revocations the proposal lifts or moves later: nodes take them (the
    protocol does not forbid it), but a key revoked because it may be in other hands then
    vouches again for what it signed meanwhile; ``admin propose`` only moves one earlier."""
    lines = []
    for node_id, old in old_nodes.items():
        new = new_nodes.get(node_id)
        listed = {k.kid: k for k in new.keys} if new is not None else {}
        for key in old.keys:
            after = listed.get(key.kid)
            if key.status != "revoked" or after is None:
                continue
            if after.status != "revoked":
                lines.append(
                    f"! {node_id} key {key.kid}: its revocation is lifted ({after.status} "
                    "again): it vouches again for what was signed with it since"
                )
            elif after.revoked_at is not None and (
                key.revoked_at is None or after.revoked_at > key.revoked_at
            ):
                since = "without a time" if key.revoked_at is None else when(key.revoked_at)
                lines.append(
                    f"! {node_id} key {key.kid}: its revocation moves later, from {since} to "
                    f"{when(after.revoked_at)}: what was signed with it before that counts "
                    "again"
                )
    return lines


# -- signatures ----------------------------------------------------------------------------


def sign(wire: bytes, admin: AdminKey, current: TrustList | None = None) -> bytes:
    """Add ``admin``'s signature over L (T2). Signing twice changes nothing. The key must be
    an admin of the proposed version or, given ``current``, of the current one (T5/T8)."""
    proposal = Proposal.from_wire(wire)
    if current is not None:
        check_successor(current, proposal)
    admins = {a.kid for a in proposal.admins}
    if current is not None:
        admins |= {a.kid for a in current.admins}
    if admin.kid not in admins:
        raise _error(
            "not-admin",
            f"{admin.label} ({admin.kid}) is not an admin of version {proposal.version}"
            + ("" if current is not None else "; if it is one of the current version, give it"),
        )
    signature = sign_list(proposal.raw, admin.pair)
    if signature in [dict(s) for s in proposal.signatures]:
        return proposal.to_wire()
    others = [s for s in proposal.signatures if s["kid"] != admin.kid]
    if len(others) + 1 > MAX_SIGNATURES:  # a file nothing could read afterwards
        raise _error(
            "too-many-signatures",
            f"{len(others)} signatures already; at most {MAX_SIGNATURES} fit, so yours cannot "
            "be added (nothing was written): ask whoever proposed it for a clean copy",
        )
    return assemble(proposal.raw, [*others, signature])


def merge(*wires: bytes, names: Sequence[str] = ()) -> bytes:
    """Unite the signatures of copies of one proposal signed on separate machines. Every
    copy must carry the identical L [proposal-mismatch]; duplicates are kept once."""
    if not wires:
        raise _error("mismatch", "nothing to merge")
    proposals = [Proposal.from_wire(w) for w in wires]
    first = proposals[0]
    labels = list(names) + [f"copy {i + 1}" for i in range(len(names), len(wires))]
    signatures: list[dict[str, str]] = []
    for label, proposal in zip(labels, proposals, strict=True):
        if proposal.raw != first.raw:
            raise _error(
                "mismatch",
                f"{label} holds another list (SHA-256 {proposal.sha256.hex()[:16]}… instead of "
                f"{first.sha256.hex()[:16]}…): it is a different proposal, or it was changed",
            )
        for signature in proposal.signatures:
            if dict(signature) not in signatures:
                signatures.append(dict(signature))
    if len(signatures) > MAX_SIGNATURES:
        raise _error(
            "too-many-signatures", f"{len(signatures)} signatures; at most {MAX_SIGNATURES} fit"
        )
    return assemble(first.raw, signatures)


@dataclass(frozen=True)
class Tally:
    """Valid signatures by distinct admins of one version against its threshold."""

    whose: str
    threshold: int
    signed: tuple[Admin, ...]
    missing: tuple[Admin, ...]

    @property
    def complete(self) -> bool:
        return len(self.signed) >= self.threshold

    def line(self) -> str:
        count = len(self.signed)
        verdict = "enough" if self.complete else f"{self.threshold - count} more"
        text = (
            f"admins of {self.whose}: {count} valid signature{'' if count == 1 else 's'}, "
            f"{self.threshold} needed: {verdict}"
        )
        if self.signed:
            text += "; signed: " + ", ".join(shown(a.label) for a in self.signed)
        if self.missing and not self.complete:
            text += "; not yet: " + ", ".join(shown(a.label) for a in self.missing)
        return text


def _tally(proposal: Proposal, admins: Sequence[Admin], threshold: int, whose: str) -> Tally:
    valid = _signers(proposal.raw, proposal.signatures, admins)
    return Tally(
        whose,
        threshold,
        tuple(a for a in admins if a.kid in valid),
        tuple(a for a in admins if a.kid not in valid),
    )


@dataclass(frozen=True)
class ProposalStatus:
    """What a proposal has and lacks. ``verdict`` is None when a node holding ``current``
    (or pinning this version 1) would install it now, else the node's refusal."""

    federation: str
    version: int
    sha256: bytes
    new: Tally
    old: Tally | None
    ignored: tuple[str, ...]
    verdict: TrustError | None
    checked: bool

    @property
    def ready(self) -> bool:
        return self.checked and self.verdict is None

    def lines(self) -> list[str]:
        lines = [f"{self.federation} version {self.version}, SHA-256 {self.sha256.hex()}"]
        if self.old is not None:
            lines.append(self.old.line())
        elif self.version > 1:
            lines.append(
                f"admins of version {self.version - 1}: not checked (give the current list)"
            )
        lines.append(self.new.line())
        if self.ignored:
            lines.append(
                "ignored signatures (invalid, or not by an admin of either version): "
                + ", ".join(self.ignored)
            )
        if self.ready:
            lines.append("ready: nodes will install this version")
        elif self.verdict is not None:
            lines.append(f"not ready: [{self.verdict.code}] {self.verdict.message}")
        else:
            lines.append("not ready to judge: give the current list to check it as nodes will")
        return lines


def status(wire: bytes, current: TrustList | None = None, now: int | None = None) -> ProposalStatus:
    """Count signatures as a node would (T2, T5, T8), then ask the node's own verifier."""
    at = int(time.time()) if now is None else now
    proposal = Proposal.from_wire(wire)
    if current is not None:
        check_successor(current, proposal)
    whose = f"version {proposal.version}"
    new = _tally(proposal, proposal.admins, proposal.threshold, whose)
    old = None
    counted = {a.kid for a in new.signed}
    if current is not None:
        old = _tally(proposal, current.admins, current.threshold, f"version {current.version}")
        counted |= {a.kid for a in old.signed}
    ignored = tuple(dict.fromkeys(s["kid"] for s in proposal.signatures if s["kid"] not in counted))
    if current is None and proposal.version > 1:
        # Signatures by admins of N only cannot be judged here.
        return ProposalStatus(
            proposal.federation, proposal.version, proposal.sha256, new, None, (), None, False
        )
    verdict: TrustError | None = None
    try:
        if current is None:
            TrustList.from_anchor(wire, proposal.sha256, at)
            if at >= proposal.expires:
                raise TrustError("trust-expired", f"version 1 expired at {proposal.expires}")
            require_issued_by(1, proposal.issued_at, at)
        else:
            current.verify_successor(wire, at)
    except TrustError as e:
        verdict = e
    return ProposalStatus(
        proposal.federation, proposal.version, proposal.sha256, new, old, ignored, verdict, True
    )


def read_aloud(digest: bytes) -> list[str]:
    """A SHA-256 as four lines of four groups of four hex digits, to read by phone."""
    hexed = digest.hex()
    groups = [hexed[i : i + 4] for i in range(0, len(hexed), 4)]
    return [" ".join(groups[i : i + 4]) for i in range(0, len(groups), 4)]


__all__ = [
    "DEFAULT_OVERLAP",
    "AddAdmin",
    "AddKey",
    "AddNode",
    "AdminKey",
    "Change",
    "Proposal",
    "ProposalError",
    "ProposalStatus",
    "RemoveAdmin",
    "RemoveKey",
    "RemoveNode",
    "RetireKey",
    "RevokeKey",
    "SetEndpoint",
    "SetName",
    "SetThreshold",
    "Tally",
    "admin_from_entry",
    "bootstrap",
    "check_successor",
    "diff",
    "key_from_entry",
    "merge",
    "node_from_entry",
    "propose",
    "read_aloud",
    "read_current",
    "shown",
    "sign",
    "status",
    "when",
]
