"""One running node: its settings, keys, database and current trust list.

A :class:`Node` is what the Flask app, the dispatcher and the CLI share. It
loads the node's private keys once, opens the database, and keeps the verified
trust list cached, re-reading the newest installed version at most every
``trust_refresh`` seconds so several worker processes converge quickly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gateway import db, quarantine, sovereignty
from gateway import policy as policy_module
from gateway.audit import log as audit
from gateway.config import Settings, pin_trust_anchor
from gateway.envelope import Limits
from gateway.errors import ConfigError, GatewayError, NodeStateError
from gateway.models import AuditEntry, Suspension, TrustListVersion
from gateway.policy import Policy
from keys.keypair import SigningKeyPair
from keys.nodekeys import NodeKeys
from keys.sealed import KeyFileError
from keys.trustlist import TrustError, TrustList, require_issued_by

log = logging.getLogger(__name__)


class Node:
    def __init__(
        self,
        settings: Settings,
        *,
        keys: NodeKeys | Callable[[], NodeKeys] | None = None,
        migrate: bool = True,
    ) -> None:
        """``keys``: the node's key ring; or a function that loads it when first needed
        (commands that only read the database never ask for the passphrase); or None
        to load the key file now with the configured passphrase. A ring loaded from
        the key file is loaded again when the file changes (``gateway keys rotate``
        or ``prune`` by another process), checked at most every ``trust_refresh``
        seconds, so running servers and dispatchers use new keys without a restart."""
        self.settings = settings
        self.id = settings.node
        self.engine = db.make_engine(
            settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        if self.engine.dialect.name == "sqlite" and settings.sqlite_synchronous != "full":
            log.warning(
                "sqlite_synchronous is %s: a power loss or operating-system crash can undo "
                "the last commits, envelopes already answered with a receipt included; set "
                "it to full unless the disk survives such a crash (docs/operations.md)",
                settings.sqlite_synchronous,
            )
        if migrate:
            db.upgrade(self.engine)
        self.sessions: sessionmaker[Session] = db.session_factory(self.engine)
        self._keys: NodeKeys | None = None
        self._load_keys: Callable[[], NodeKeys] | None = None
        self._key_file_stamp: tuple[int, int] | None = None
        self._key_file_checked_at = 0.0
        if keys is None:
            self._load_keys = lambda: NodeKeys.load(settings.key_file, settings.key_passphrase)
            _ = self.keys  # load now: a server fails at start, not at its first request
        elif isinstance(keys, NodeKeys):
            self.keys = keys
        else:
            self._load_keys = keys
        self.limits = Limits(
            max_bytes=settings.max_envelope_bytes,
            skew=settings.clock_skew,
            max_ttl=settings.max_ttl,
        )
        self._lock = threading.Lock()
        self._suspensions: list[Suspension] = []
        self._suspensions_read_at: float | None = None
        self._expiry_logged_at = float("-inf")
        self._trust: TrustList | None = None
        self._trust_checked_at = 0.0
        self._policy: Policy | None = None
        self._policy_stamp: tuple[int, int] | None = None
        # Why the policy in force is not the file's (it went, or does not load), or None.
        self.policy_problem: str | None = None
        self._policy_checked_at = float("-inf")
        self.policy()  # a policy file that does not parse stops the node at start

    @property
    def keys(self) -> NodeKeys:
        if self._keys is None:
            assert self._load_keys is not None
            self.keys = self._load_keys()
        elif self._load_keys is not None and self._key_file_changed():
            stamp = self._stamp()
            try:
                self.keys = self._load_keys()
            except (KeyFileError, NodeStateError, OSError) as e:  # keep the ring we have
                # Once per change of the file, not on every refresh: a key file sealed
                # again under a new passphrase costs a key derivation each try. (An
                # OSError: a file this process may no longer read, say rewritten by
                # another user, or replaced by a folder; NodeStateError: another
                # node's keys.)
                self._key_file_stamp = stamp
                log.error(
                    "key file %s changed but does not load: [%s] %s; this process keeps "
                    "its keys until it is restarted (after a 'gateway keys reseal', with "
                    "the new passphrase)",
                    self.settings.key_file,
                    getattr(e, "code", "file-unreadable"),
                    getattr(e, "message", None) or getattr(e, "strerror", None) or str(e),
                )
        assert self._keys is not None
        return self._keys

    @keys.setter
    def keys(self, ring: NodeKeys) -> None:
        if ring.node != self.id:
            raise NodeStateError(
                "keys-wrong-node",
                f"key file {self.settings.key_file} belongs to {ring.node}, not to {self.id}",
            )
        self._keys = ring
        if self._load_keys is not None:
            self._key_file_stamp = self._stamp()

    def keys_if_loaded(self) -> NodeKeys | None:
        """The key ring if this process has loaded it already (never prompts or reads)."""
        return self._keys

    def _stamp(self) -> tuple[int, int] | None:
        try:
            status = os.stat(self.settings.key_file)
        except OSError:
            return None
        return (status.st_mtime_ns, status.st_size)

    def _key_file_changed(self) -> bool:
        now = time.monotonic()
        if now - self._key_file_checked_at < self.settings.trust_refresh:
            return False
        self._key_file_checked_at = now
        stamp = self._stamp()
        return stamp is not None and stamp != self._key_file_stamp

    def signing_pair(self, now: int | None = None, *, usable: bool = True) -> SigningKeyPair:
        """The key this node signs envelopes, receipts and checkpoints with: its newest
        signing key that the current trust list lets it use now. After ``gateway keys
        rotate`` the new key is used only once the federation's list carries it, so
        peers never see a key they cannot know; until then the previous one signs.

        When the list lets it use none (its key revoked, with no new one listed yet, or
        the node missing from the list), a ``signing-key-unusable`` NodeStateError: what
        it signed then, peers would refuse (a receipt stored with such a signature would
        answer every retry of its envelope), and a revoked key may be in someone else's
        hands. With ``usable=False`` (to show which key it is), its newest key instead.
        Without a trust list installed, its newest key."""
        at = int(time.time()) if now is None else now
        ring = self.keys
        try:
            listed = self.trust().keys
        except NodeStateError:
            return ring.current_signing
        for entry in sorted(ring.signing, key=lambda k: k.created, reverse=True):
            try:
                listed.signing_key(self.id, entry.kid, at, at)
            except TrustError:
                continue
            return entry.pair
        if not usable:
            return ring.current_signing
        raise NodeStateError(
            "signing-key-unusable",
            f"the trust list lets this node ({self.id}) use none of its signing keys now "
            f"({', '.join(k.kid for k in ring.signing)}): it signs nothing peers would "
            "accept; ask the administrators for a version that lists a usable signing key "
            "of this node (after 'gateway keys rotate', its new one); 'gateway keys check' "
            "says what the list holds",
        )

    def suspensions(self) -> list[Suspension]:
        """Local suspensions in force (re-read at most every ``trust_refresh`` seconds,
        so a decision taken with the CLI reaches every worker quickly)."""
        now = time.monotonic()
        read_at = self._suspensions_read_at
        if read_at is None or now - read_at >= self.settings.trust_refresh:
            with self.sessions() as session:
                decisions = sovereignty.active(session)
                session.expunge_all()
            self._suspensions, self._suspensions_read_at = decisions, now
        return self._suspensions

    def forget_suspensions(self) -> None:
        self._suspensions_read_at = None

    # ---------------------------------------------------------------------- policy

    def policy(self) -> Policy:
        """The node's sharing policy (``INSTANCE/policy.toml``), read again when the
        file changes (checked at most every ``trust_refresh`` seconds). A changed file
        that does not parse, or a file that disappears, is an ERROR in the log, and the
        last good policy stays."""
        now = time.monotonic()
        if self._policy is not None and now - self._policy_checked_at < self.settings.trust_refresh:
            return self._policy
        self._policy_checked_at = now
        path = os.path.join(self.settings.instance, policy_module.POLICY_FILE)
        try:
            status = os.stat(path)
            stamp: tuple[int, int] | None = (status.st_mtime_ns, status.st_size)
        except OSError:
            stamp = None
        if self._policy is not None and stamp == self._policy_stamp:
            self.policy_problem = None  # back as it was when it last loaded
            return self._policy
        if stamp is None and self._policy is not None and not self._policy.open:
            # Never fail open: a policy file that goes away (a botched deploy, a
            # deletion) leaves the last policy in force until a new file is written.
            self.policy_problem = f"{path} has disappeared; the last policy stays in force"
            log.error("policy file %s", self.policy_problem)
            return self._policy
        try:
            loaded = policy_module.load(self.settings.instance)
        except ConfigError as e:
            if self._policy is None:
                raise
            self.policy_problem = (
                f"{path} changed but does not load ([{e.code}] {e.message}); the last policy "
                "stays in force"
            )
            log.error("policy file %s", self.policy_problem)
            return self._policy
        self._policy, self._policy_stamp, self.policy_problem = loaded, stamp, None
        return loaded

    def use_policy(self, policy: Policy) -> None:
        """Use ``policy`` instead of the file (tests, embedding)."""
        self._policy, self._policy_checked_at = policy, float("inf")

    # ------------------------------------------------------------------ trust list

    def trust(self) -> TrustList:
        """The newest verified trust list; raises NodeStateError if none is installed."""
        now = time.monotonic()
        with self._lock:
            if self._trust is None or now - self._trust_checked_at >= self.settings.trust_refresh:
                self._trust = self._load_trust()
                self._trust_checked_at = now
            if self._trust is None:
                raise NodeStateError(
                    "no-trust-list", "no trust list installed: run 'gateway trust install FILE'"
                )
            return self._trust

    def _load_trust(self) -> TrustList | None:
        with self.sessions() as session:
            # The audit entries first: an install committed between the two reads (on
            # PostgreSQL each statement sees the latest commits) can then only make the
            # stored version newer, never look like a rollback.
            recorded = _highest_installed(session)
            newest = session.scalars(
                select(TrustListVersion.version).order_by(TrustListVersion.version.desc()).limit(1)
            ).first()
            known = max(recorded, self._trust.version if self._trust is not None else 0)
            if (newest or 0) < known:
                raise _rolled_back(newest, known)
            if newest is None:
                return None
            if self._trust is not None and self._trust.version == newest:
                return self._trust
            rows = session.scalars(
                select(TrustListVersion).order_by(TrustListVersion.version)
            ).all()
        # Stored lists were verified when installed; re-verify the chain from the first
        # version anyway so a row edited in the database is not trusted. The configured
        # anchor, when there is one, is the authority, not the hash kept beside the row.
        now = int(time.time())
        try:
            if self.settings.trust_anchor:
                first = TrustList.from_anchor(
                    rows[0].wire, bytes.fromhex(self.settings.trust_anchor), now
                )
            else:
                first = TrustList.from_pinned(rows[0].wire, rows[0].sha256)
        except TrustError as e:
            raise NodeStateError(
                e.code, f"installed trust list version 1 does not verify: {e.message}"
            ) from e
        try:
            return first.verify_chain([row.wire for row in rows[1:]], now, installed=True)
        except TrustError as e:
            raise NodeStateError(
                e.code, f"an installed trust list version does not verify: {e.message}"
            ) from e

    def install_trust_list(
        self, wire: bytes, *, anchor: str | None = None, now: int | None = None
    ) -> TrustList:
        """Verify ``wire`` and install it: version 1 against the pinned anchor, later
        versions as successors of the current one (PROTOCOL §5)."""
        at = int(time.time()) if now is None else now
        verified: list[TrustList] = []  # the list, once verified
        try:
            return self._install_list(wire, anchor, at, verified)
        except IntegrityError as e:
            if not verified:
                raise
            self._installed_meanwhile(e, verified)
            return self._fresh_trust()

    def _install_list(
        self, wire: bytes, anchor: str | None, at: int, verified: list[TrustList]
    ) -> TrustList:
        with self.sessions() as session, session.begin():
            newest = session.scalars(
                select(TrustListVersion).order_by(TrustListVersion.version.desc()).limit(1)
            ).first()
            configured = self.settings.trust_anchor
            if anchor and configured and anchor != configured:
                # The configured anchor is what every later start checks against.
                raise GatewayError(
                    "trust-anchor-mismatch",
                    f"the anchor given ({anchor}) differs from trust_anchor {configured} "
                    "in the configuration; compare both with the anchor the "
                    "administrators published and correct the wrong one",
                    status=400,  # as when the list does not match the anchor
                )
            if newest is None:
                # Every stored version deleted: installing version 1 again would put
                # the keys revoked since back in force.
                recorded = _highest_installed(session)
                if recorded > 1:
                    raise _rolled_back(None, recorded)
                pinned = configured or anchor
                if not pinned:
                    raise NodeStateError(
                        "no-trust-anchor",
                        "the first trust list needs its SHA-256 anchor: give it (--anchor, "
                        "or ?anchor= in the admin API) or set trust_anchor in gateway.toml",
                    )
                trust_list = TrustList.from_anchor(wire, bytes.fromhex(pinned), at)
                require_issued_by(1, trust_list.issued_at, at)  # T10, as for its successors
                if not configured:
                    # Pinned before the list is stored: every later start (and every
                    # other process of this node, once restarted) checks against it.
                    try:
                        pin_trust_anchor(Path(self.settings.instance), pinned)
                    except (OSError, ConfigError) as e:
                        reason = e.message if isinstance(e, ConfigError) else e.strerror or e
                        raise GatewayError(
                            "trust-anchor-not-pinned",
                            f"cannot write the anchor into gateway.toml ({reason}); nothing "
                            "was installed: set trust_anchor in gateway.toml or "
                            "GATEWAY_TRUST_ANCHOR, then install again",
                            status=500,
                        ) from e
                    self.settings = dataclasses.replace(self.settings, trust_anchor=pinned)
                previous = None
            else:
                current = self.trust()
                if newest.version != current.version:  # another process installed one since
                    current = self._fresh_trust()
                trust_list = current.verify_successor(wire, at)
                previous = current
            verified.append(trust_list)
            self._store(session, [trust_list], at)
            quarantine.hold_revoked(session, trust_list, at, previous=previous)
        self._use(trust_list)
        return trust_list

    def install_trust_chain(self, wires: list[bytes], *, now: int | None = None) -> TrustList:
        """Verify versions N+1, N+2, … of the current list N in order (PROTOCOL §5, every
        step with both thresholds) and install them all, or none; except that when only
        the last is refused for being issued ahead of this node's clock (T10), those
        before it are installed (a revocation among them must not wait for that date),
        unless the last of them has expired; the refused one is left to the next try."""
        at = int(time.time()) if now is None else now
        current = self.trust()
        verified: list[TrustList] = []
        for index, wire in enumerate(wires):
            base = verified[-1] if verified else current
            try:
                verified.append(base.verify_chain([wire], at, installed=index < len(wires) - 1))
            except TrustError as e:
                if e.code != "trust-time" or not verified or verified[-1].is_expired(at):
                    raise
                log.warning(
                    "trust list version %s refused ([%s] %s); installing the versions "
                    "before it, up to %s",
                    index + current.version + 1,
                    e.code,
                    e.message,
                    verified[-1].version,
                )
        try:
            with self.sessions() as session, session.begin():
                self._store(session, verified, at)
                # A key revoked in N+1 may be gone from N+2: each version in turn.
                for previous, trust_list in zip([current, *verified], verified, strict=False):
                    quarantine.hold_revoked(session, trust_list, at, previous=previous)
        except IntegrityError as e:
            self._installed_meanwhile(e, verified)
            # The versions after those installed meanwhile, if any, on top of them.
            fresh = self._fresh_trust()
            rest = [trust_list for trust_list in verified if trust_list.version > fresh.version]
            return self.install_trust_chain([t.to_wire() for t in rest], now=at) if rest else fresh
        self._use(verified[-1])
        return verified[-1]

    def _installed_meanwhile(self, error: IntegrityError, lists: list[TrustList]) -> None:
        """After an insert of ``lists`` failed on a version already stored: another
        process of this node (a second dispatcher following the same announcement, an
        operator's command) verified and installed the same version against the same
        predecessor first. The same lists: in force (nothing to do). Another list of a
        version number stored: refused, as nothing of ours was stored."""
        versions = [trust_list.version for trust_list in lists]
        with self.sessions() as session:
            rows = session.execute(
                select(TrustListVersion.version, TrustListVersion.sha256).where(
                    TrustListVersion.version.in_(versions)
                )
            )
            stored = {version: sha256 for version, sha256 in rows}
        if not stored:
            raise error  # not a version stored twice: some other constraint
        for trust_list in lists:
            if stored.get(trust_list.version, trust_list.sha256) != trust_list.sha256:
                raise TrustError(
                    "trust-chain",
                    f"trust list version {trust_list.version} was installed meanwhile by "
                    "another process of this node, with other contents; this one was not "
                    "installed: show both to the administrators ('gateway trust show')",
                )

    def _fresh_trust(self) -> TrustList:
        """The newest verified trust list, read from the database now."""
        with self._lock:
            self._trust_checked_at = float("-inf")
        return self.trust()

    def trust_list_version(self, version: int) -> bytes | None:
        """The wire form of an installed version, for peers walking the chain."""
        with self.sessions() as session:
            row = session.get(TrustListVersion, version)
            return row.wire if row is not None else None

    @staticmethod
    def _store(session: Session, lists: list[TrustList], at: int) -> None:
        for trust_list in lists:
            audit.record(
                session,
                "trust-list-installed",
                at=at,
                version=trust_list.version,
                sha256=trust_list.sha256.hex(),
            )
            session.add(
                TrustListVersion(
                    version=trust_list.version,
                    wire=trust_list.to_wire(),
                    sha256=hashlib.sha256(trust_list.raw).digest(),
                    installed_at=at,
                )
            )

    def _use(self, trust_list: TrustList) -> None:
        with self._lock:
            self._trust = trust_list
            self._trust_checked_at = time.monotonic()

    def require_sending_allowed(self, now: int) -> TrustList:
        """An expired trust list freezes sending (PROTOCOL §5) with a clear alarm."""
        trust_list = self.trust()
        if trust_list.is_expired(now):
            alarm = NodeStateError(
                "trust-list-expired",
                f"trust list version {trust_list.version} expired at "
                f"{trust_list.expires}; sending is frozen until a newer version is installed",
            )
            if time.monotonic() - self._expiry_logged_at >= 60:  # an alarm, not a flood
                self._expiry_logged_at = time.monotonic()
                log.error("ALARM [%s] %s", alarm.code, alarm.message)
            raise alarm
        return trust_list


def listing_problems(
    node_id: str, ring: NodeKeys | None, trust_list: TrustList, now: int | None = None
) -> list[str]:
    """What keeps node ``node_id`` from exchanging under ``trust_list`` with the key
    ring ``ring`` (with None, only whether the list names the node), one sentence each
    (:meth:`NodeKeys.listing_problems`)."""
    if node_id not in trust_list.node_ids:
        return [
            f"this node ({node_id}) is not in trust list version {trust_list.version}: "
            "peers refuse what it sends and it can sign no checkpoint they accept; ask the "
            "administrators to add its entry ('gateway keys entry')"
        ]
    if ring is None:
        return []
    if ring.node != node_id:
        return [
            f"the key file holds the keys of {ring.node}, not of {node_id}: restore this "
            "node's own key file (or check the instance folder)"
        ]
    return ring.listing_problems(trust_list.keys, int(time.time()) if now is None else now)


__all__ = ["Node", "TrustError", "listing_problems"]


def _highest_installed(session: Session) -> int:
    """The highest trust list version the audit log says this node installed (0 for
    none): every ``trust-list-installed`` entry counts, not only the last, as version
    1 installed again after the stored versions were deleted would be the last."""
    return max(
        (
            _installed_version(entry)
            for entry in session.scalars(
                select(AuditEntry.entry).where(AuditEntry.kind == "trust-list-installed")
            )
        ),
        default=0,
    )


def _rolled_back(stored: int | None, installed: int) -> NodeStateError:
    return NodeStateError(
        "trust-rollback",
        f"the database holds trust list version {stored or 'none'}, but version {installed} "
        "was installed (audit log, or this process): a stored version was deleted, which "
        "would put keys revoked since back in force; restore the database from a backup",
    )


def _installed_version(entry: bytes | None) -> int:
    """The version a ``trust-list-installed`` audit entry names (0 for none; an entry
    that is not one is left to ``gateway audit verify``, which names it)."""
    try:
        version = json.loads(entry)["version"] if entry is not None else 0
    except (ValueError, TypeError, KeyError):
        return 0
    return version if type(version) is int else 0
