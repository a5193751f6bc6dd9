"""Following the federation's trust list (PROTOCOL §5, last rule).

Every envelope carries ``tl``, the trust list version its sender used. When a
peer announces a higher version than ours, the receiving web worker only notes
it (:func:`note_announcement`, one cheap comparison on the hot path). The
dispatcher process then fetches the newer versions from that peer —
``GET /xb1/trust-list`` for its current one and, when more than one version is
missing, ``GET /xb1/trust-list/versions/N`` for those in between — verifies the
whole chain from our current version (both thresholds at every step, rollback
and expiry rules) and only then installs and uses it.

Nothing fetched is trusted because of where it came from: a list that does not
verify is refused with its trust error code and the announcement stays
visible, to be retried.
"""

from __future__ import annotations

import logging
import time

import requests
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from gateway import peer_http
from gateway.errors import ApiError, GatewayError, PeerError, printable
from gateway.models import TrustHint
from gateway.node import Node, listing_problems
from keys.trustlist import TrustError, TrustList
from schemas import xb1json
from schemas.b64 import b64d
from schemas.errors import WireFormatError

log = logging.getLogger(__name__)

MAX_VERSIONS_PER_FETCH = 100
MAX_LIST_BYTES = 4 * 1024 * 1024
RETRY_AFTER = 30  # seconds between attempts for one announcement
MAX_LIST_VERSION = 2**31 - 1
"""The largest trust list version this node stores (a 32-bit column, as versions go up
by one per list). An envelope's ``tl`` may be larger (up to 2^53 - 1): no real list
can be that far, so such an announcement is logged and otherwise ignored."""


def note_announcement(node: Node, peer: str, version: int, now: int) -> None:
    """Record that ``peer`` used trust list ``version``, if it is newer than ours
    (its own short transaction, after the envelope's own has committed)."""
    if version <= node.trust().version:
        return
    if version > MAX_LIST_VERSION:
        log.warning("%s announced trust list version %s, beyond any list; ignored", peer, version)
        return
    with node.sessions() as session:
        hint = session.get(TrustHint, peer)
        if hint is None:
            session.add(TrustHint(peer=peer, version=version, seen_at=now))
        elif version > hint.version:
            hint.version = version
            hint.seen_at = now
        else:
            return
        try:
            session.commit()
        except IntegrityError:  # a concurrent request noted the same peer first
            session.rollback()


def _peek_version(wire: bytes) -> int:
    """The version a fetched list claims, read before verification only to know how
    many versions to ask for."""
    try:
        outer = xb1json.loads(wire)
        body = xb1json.loads(b64d(outer["list"], what="list"))
        version = body["version"]
    except (WireFormatError, KeyError, TypeError) as e:
        raise TrustError("trust-malformed", f"fetched trust list is malformed: {e}") from e
    if not isinstance(version, int) or isinstance(version, bool):
        raise TrustError("trust-malformed", "fetched trust list has no integer version")
    return version


class TrustFollower:
    def __init__(self, node: Node, http: requests.Session | None = None) -> None:
        self.node = node
        self.http = peer_http.session(http)

    def _get(self, url: str, until: float) -> bytes:
        return peer_http.get(
            self.http,
            url,
            timeout=self.node.settings.peer_timeout,
            max_bytes=MAX_LIST_BYTES,
            until=until,
        )

    def fetch(self, endpoint: str, have: int) -> list[bytes]:
        """The wire forms of versions have+1 … newest served at ``endpoint``."""
        if endpoint.startswith("http://") and not self.node.settings.allow_insecure_http:
            raise PeerError(
                "insecure-endpoint",
                f"{endpoint} is plain HTTP; allow_insecure_http is for tests and demonstrations "
                "only: ask the administrators for an https:// endpoint",
            )
        base = endpoint.rstrip("/") + "/xb1/trust-list"
        # One budget for everything fetched from this member (its list and the versions
        # in between): a member serving them a byte at a time, or claiming a hundred
        # versions and sending each slowly, holds the dispatcher, which follows up
        # before it sends, for twice peer_timeout at most.
        until = time.monotonic() + 2 * self.node.settings.peer_timeout
        newest_wire = self._get(base, until)
        newest = _peek_version(newest_wire)
        if newest <= have:
            return []
        if newest - have > MAX_VERSIONS_PER_FETCH:
            raise TrustError(
                "trust-rollback",
                f"{endpoint} claims version {newest}, {newest - have} versions ahead of ours; "
                "install the missing versions by hand",
            )
        wires = [self._get(f"{base}/versions/{v}", until) for v in range(have + 1, newest)]
        return [*wires, newest_wire]

    def follow(self, peer: str, now: int | None = None) -> TrustList | None:
        """Fetch from one member now, whatever it announced; None if it has nothing newer."""
        at = int(time.time()) if now is None else now
        current = self.node.trust()
        if peer == self.node.id:
            raise ApiError(
                "unknown-node",
                f"{peer} is this node; fetch from another member ('gateway trust show')",
                status=422,
            )
        entry = current.node(peer)
        if entry is None:
            raise ApiError(
                "unknown-node",
                f"{peer} is not a member in trust list version {current.version}; "
                "'gateway trust show' lists the members",
                status=422,
            )
        wires = self.fetch(entry.endpoint, current.version)
        if not wires:
            return None
        installed = self.node.install_trust_chain(wires, now=at)
        self._warn(installed)
        return installed

    def _warn(self, installed: TrustList) -> None:
        """Log what keeps this node from exchanging under the version just installed,
        with the keys this process runs on (the dispatcher's; a command that has not
        opened the key file says it itself: gateway/cli.py)."""
        if self.node.keys_if_loaded() is None:
            return
        ring = self.node.keys  # as loaded, or reloaded if the key file changed since
        for problem in listing_problems(self.node.id, ring, installed):
            log.warning("under trust list version %s: %s", installed.version, problem)

    def _sources(self, trust_list: TrustList, peer: str) -> list[str]:
        """The announcing peer first, then every other member."""
        order = [peer] + [n for n in trust_list.node_ids if n not in (peer, self.node.id)]
        entries = [trust_list.node(n) for n in order]
        return [entry.endpoint for entry in entries if entry is not None]

    def run_once(self, now: int | None = None) -> TrustList | None:
        """Act on pending announcements; return the newly installed list, if any."""
        at = int(time.time()) if now is None else now
        current = self.node.trust()
        with self.node.sessions() as session:
            session.execute(delete(TrustHint).where(TrustHint.version <= current.version))
            session.commit()
            hints = session.scalars(
                select(TrustHint).order_by(TrustHint.version.desc(), TrustHint.peer)
            ).all()
            due = [h for h in hints if h.attempted_at is None or at - h.attempted_at >= RETRY_AFTER]
            session.expunge_all()
        for hint in due:
            errors = []
            announcer = current.node(hint.peer)
            refuted = False  # the announcing member itself serves nothing newer than ours
            for endpoint in self._sources(current, hint.peer):
                try:
                    wires = self.fetch(endpoint, current.version)
                    if not wires:
                        refuted = refuted or (
                            announcer is not None and endpoint == announcer.endpoint
                        )
                        continue
                    installed = self.node.install_trust_chain(wires, now=at)
                except (GatewayError, TrustError) as e:
                    errors.append(f"{endpoint}: [{e.code}] {getattr(e, 'message', e)}")
                    continue
                log.info("trust list version %s installed from %s", installed.version, endpoint)
                self._warn(installed)
                with self.node.sessions() as session:
                    session.execute(delete(TrustHint).where(TrustHint.version <= installed.version))
                    session.commit()
                return installed
            if refuted:
                # An announcement its own sender does not stand by (a forged envelope
                # claiming a member's name, or a list that member has since withdrawn):
                # forgotten, not kept as an alarm.
                with self.node.sessions() as session:
                    session.execute(
                        delete(TrustHint).where(
                            TrustHint.peer == hint.peer, TrustHint.version == hint.version
                        )
                    )
                    session.commit()
                log.info(
                    "%s announced trust list version %s but serves no version newer than "
                    "%s; announcement dropped",
                    hint.peer,
                    hint.version,
                    current.version,
                )
                continue
            with self.node.sessions() as session:
                row = session.get(TrustHint, hint.peer)
                if row is not None:
                    row.attempted_at = at
                    row.last_error = (
                        printable("; ".join(errors))[:2000] or "no member served a newer list"
                    )
                    session.commit()
            log.warning(
                "could not follow trust list version %s announced by %s: %s",
                hint.version,
                hint.peer,
                errors,
            )
        return None
