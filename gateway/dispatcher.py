"""The dispatcher: takes due deliveries from the outbox and sends their envelopes.

Several dispatchers may run at once (processes, or hosts on one PostgreSQL).
A delivery is claimed with a compare-and-set ``UPDATE`` that only succeeds on
a row that is due (queued or retrying, ``next_attempt_at`` passed) or whose
previous claim's lease has run out (a dispatcher that died mid-send). Only the
claim holder records the outcome. The lease is longer than twice the HTTP
timeout (checked in config), and one attempt ends within twice that timeout of
its start, so no message is being sent by two dispatchers at once; a send
interrupted by a crash is repeated with the byte-identical envelope, which the
receiver answers as a retry — never a second inbox entry.

The bound on an attempt is one deadline, twice ``peer_timeout`` after it
starts, not the per-operation timeouts of the HTTP client (which a peer sending
its answer a byte at a time never meets). It covers connecting, the TLS
handshake, sending the request, and reading the status line, headers and body,
on a new connection or one reused from the pool, over http and https alike.
When it passes, the attempt's socket is shut down (``gateway/peer_http.py``) and
the attempt ends as ``retrying``: ``peer-unreachable`` if no status line had
arrived, ``answer-unreadable`` if one had, with "no complete answer within N s"
in the detail; an answer counts only if complete by then. Outside it: resolving
the peer's host name (the resolver's own timeouts), and, for a name with
several addresses, connecting to the next ones (``peer_timeout`` each).

Outcomes: an accepted receipt that verifies → ``delivered``; a signed rejected
receipt → ``rejected`` (or ``retrying`` for codes a trust-list or clock update
can cure); network errors, 5xx, unauthenticated refusals and receipts that do
not verify → ``retrying`` with exponential backoff and full jitter; past the
envelope's ``exp`` → ``expired``, and at ``exp`` itself when keys changed under
the envelope (a new one, keeping the message's expiry, would have no time left).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import random
import socket
import time
import weakref
from dataclasses import dataclass, replace
from typing import Any

import requests
import urllib3
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from gateway import onward, peer_http, purge, sovereignty
from gateway.audit import log as audit
from gateway.audit.witness import Witness
from gateway.db import clock_offset
from gateway.envelope import (
    REJECTION_CODES,
    Envelope,
    Header,
    ReceiptInvalid,
    Recipient,
    seal,
    step1_parse_outer,
    step2_parse_header,
    verify_receipt,
)
from gateway.errors import GatewayError, NodeStateError, printable
from gateway.models import (
    Delivery,
    DeliveryState,
    OutboundMessage,
    SealedEnvelope,
)
from gateway.node import Node
from gateway.outbox import (
    INTERRUPTED,
    RESEAL_NEEDED,
    RESEALED,
    denied_now,
    may_have_arrived,
    record_event,
    withdrawn_detail,
)
from gateway.trust_sync import TrustFollower
from keys.sealed import KeyFileError
from keys.trustlist import TrustError, TrustList
from schemas.b64 import b64e

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 64 * 1024
_READ_CHUNK = 8 * 1024


class AnswerTooSlow(Exception):
    """A peer's answer still arriving when its attempt's time was up."""


# What a peer can make a request or the reading of its answer raise (requests'
# exceptions are OSErrors; urllib3's, raised while reading the body, are not).
_BROKEN = (OSError, urllib3.exceptions.HTTPError, AnswerTooSlow)


def _read_answer(answer: requests.Response, *, deadline: float) -> tuple[bytes, float]:
    """At most ``MAX_ANSWER_BYTES`` of the answer (a receipt is small), read by
    ``deadline``: a peer trickling its answer cannot hold the delivery past its lease
    (each read alone is bounded by ``peer_timeout``, the attempt by twice that; a
    read still waiting at the deadline is ended by ``peer_http.deadline``). Also when
    the last read ended (``time.monotonic()``): the answer was whole then."""
    chunks: list[bytes] = []
    size = 0
    while size < MAX_ANSWER_BYTES:
        if time.monotonic() > deadline:
            raise AnswerTooSlow(f"answer not complete after {size} bytes")
        # read1: what one read of the socket gives (read() would wait for the whole amount).
        chunk = answer.raw.read1(min(_READ_CHUNK, MAX_ANSWER_BYTES - size), decode_content=True)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), time.monotonic()


# Rejections that a later attempt may cure (peer's trust list or clock lagging).
TRANSIENT_REJECTIONS = frozenset({"unknown-sender", "key-not-valid", "not-yet-valid"})
# Step 7 refusals of an envelope sealed to a key the recipient no longer has; the
# recipient checks for a stored copy (step 6) before giving them (gateway/inbox.py).
CANNOT_OPEN = frozenset({"not-a-recipient", "unwrap-failed", "key-commitment-mismatch"})
# Signed refusals given only after the recipient's replay check (PROTOCOL §3 steps 6 to
# 8), which answers a copy it stored with that copy's receipt: such a refusal proves that
# it holds no copy of the envelope refused. One of steps 1 to 5 (``expired`` when its
# clock runs ahead, ``ttl-too-long`` under a lower limit, ...) comes before that check
# and proves nothing about an earlier attempt (gateway.outbox.may_have_arrived); nor do
# ``malformed`` and ``not-canonical``, which step 7 gives too, but steps 1 and 5 as well.
AFTER_REPLAY_CHECK = frozenset(
    {
        "replay",
        *CANNOT_OPEN,
        "decrypt-failed",
        "schema-invalid",
        "unsupported-type",
        "policy-denied",
    }
)
# The longest worker id the database keeps (lease_owner, delivery_events.worker).
WORKER_ID_LENGTH = 80


@dataclass(frozen=True)
class Outcome:
    state: str
    code: str | None = None
    detail: str | None = None
    receipt: bytes | None = None
    verified: bool = False


def _newer_list_may_explain(error: ReceiptInvalid) -> bool:
    """Whether a receipt failed only on its signer's key: unknown to this node's list, or
    not valid in it (a key a later version lists, or lists with another window)."""
    cause = error.__cause__
    return isinstance(cause, TrustError) and cause.code in ("unknown-sender", "key-not-valid")


def backoff_delay(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempts)]
    but at least ``base``/2 so a dead peer is not hammered."""
    ceiling = min(cap, base * (2 ** min(attempts, 32)))
    return max(base / 2, rng.uniform(0, ceiling))


RECEIPT_FOLLOW_INTERVAL = 60.0
"""Seconds between two fetches of one recipient's trust list for its receipts."""

DATABASE_PAUSE = 5.0
"""Seconds a running dispatcher waits after a round failed on the database (down,
restarting, or locked past its busy timeout) before the next round; doubled after
each further failed round, up to ``DATABASE_PAUSE_LONGEST``."""
DATABASE_PAUSE_LONGEST = 60.0
INDEX_BATCHES = 4
"""Batches of H2 identifiers (gateway/onward.py) a dispatcher records per round at
most, so that a backlog delays its sending by a few tenths of a second a round."""


def database_pause(failed: int) -> float:
    """The pause after the ``failed``-th round in a row that failed on the database."""
    # The exponent bounded: a database down for days must not overflow the float.
    return min(DATABASE_PAUSE * 2 ** min(failed - 1, 16), DATABASE_PAUSE_LONGEST)


def _worker_id(host: str, pid: int, instance: int) -> str:
    """``host:pid:instance``, the host name shortened to fit the database's column."""
    rest = f":{pid}:{instance:x}"
    return host[: WORKER_ID_LENGTH - len(rest)] + rest


def _presence_path(database: str, worker: str) -> str:
    """The file a dispatcher holds locked while it runs, beside a SQLite database."""
    name = hashlib.sha256(worker.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return os.path.join(database + "-dispatchers", name + ".lock")


def _let_go(presence: int, path: str, pid: int) -> None:
    """A dispatcher that ends of itself (or is collected) removes its file, then lets
    go of its lock: nobody sees its file unlocked while it could still send. One that
    is killed leaves it, for :func:`_stopped`. A child forked from its process only
    closes its copy (the file is its parent's)."""
    if os.getpid() == pid:
        with contextlib.suppress(OSError):
            os.unlink(path)
    os.close(presence)


def _stopped(database: str, owner: str) -> bool:
    """Whether the dispatcher ``owner`` announced itself (:meth:`Dispatcher._announce`)
    and no longer runs: its file is there and nobody holds its lock. Not for one that
    announced nothing (an older version's, a file system without ``flock``): False, as
    for one that runs. A lock of ``flock`` is the open file's, so this holds across
    process namespaces (containers sharing the database's folder), for a process
    whose id was given to another, and for one that exited but was not reaped."""
    path = _presence_path(database, owner)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Still the file at that path: not one its owner removed as it ended, whose
        # id a new dispatcher of the same process has taken since.
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except OSError:
        return False  # held: it runs (or the file went)
    finally:
        os.close(fd)


def _pause(seconds: float) -> None:
    time.sleep(seconds)


class Dispatcher:
    def __init__(
        self,
        node: Node,
        *,
        worker: str | None = None,
        http: requests.Session | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.node = node
        self.worker = worker or _worker_id(socket.gethostname(), os.getpid(), id(self))
        if len(self.worker) > WORKER_ID_LENGTH:
            raise ValueError(f"a worker id has at most {WORKER_ID_LENGTH} characters")
        # A session given is sent through too: each attempt must end by its deadline.
        self.http = peer_http.session(http)
        self.rng = rng or random.Random()
        self._taken_over: set[int] = set()  # claimed from a dispatcher whose lease ran out
        self._unknown_signers: set[str] = set()  # recipients whose receipt key is unknown
        # The code of the last checkpoint that failed, and when it was logged (monotonic).
        self._checkpoint_failure: tuple[str, float] | None = None
        self._signers_followed: dict[str, float] = {}  # recipient: when (monotonic)
        self._follower: TrustFollower | None = None
        # Lets go of the file held locked (:meth:`_announce`); called when collected.
        self._presence: weakref.finalize[Any, Any] | None = None
        self._announced = False

    # ------------------------------------------------------------------ claiming

    @staticmethod
    def _due(now: int):  # type: ignore[no-untyped-def]
        """Queued or retrying, and due (claimed by :meth:`_take`)."""
        return and_(
            Delivery.state.in_((DeliveryState.QUEUED, DeliveryState.RETRYING)),
            Delivery.next_attempt_at <= now,
        )

    @staticmethod
    def _lease_ran_out(now: int):  # type: ignore[no-untyped-def]
        """Left sending by a dispatcher whose lease ran out (claimed by :meth:`_take_over`)."""
        return and_(Delivery.state == DeliveryState.SENDING, Delivery.lease_until < now)

    def _claimable(self, now: int):  # type: ignore[no-untyped-def]
        return or_(self._due(now), self._lease_ran_out(now))

    def claim(self, now: int) -> list[int]:
        """Claim up to ``dispatch_batch`` due deliveries; returns their ids. Raises
        :class:`ClockSkew`, claiming nothing, while this host's clock is further off a
        PostgreSQL server's than ``settings.clock_bound``: its idea of which leases have
        run out would be wrong."""
        settings = self.node.settings
        claimed = []
        self._taken_over.clear()  # from a round cut short: taken over again if needed
        self._announce()
        with self.node.sessions() as session:
            offset = clock_offset(session)
            if offset is not None and abs(offset) > settings.clock_bound:
                raise ClockSkew(
                    f"this host's clock is {offset:+.1f} s off the database server's "
                    f"(at most ±{settings.clock_bound:g} s with dispatch_lease "
                    f"{settings.dispatch_lease} s and peer_timeout {settings.peer_timeout} s): "
                    "claiming nothing, so no lease is taken over early; synchronise the "
                    "clock (NTP)"
                )
            candidates = session.scalars(
                select(Delivery.id)
                .where(self._claimable(now))
                .order_by(Delivery.next_attempt_at, Delivery.id)
                .limit(settings.dispatch_batch)
            ).all()
            for delivery_id in candidates:
                if self._take_over(session, delivery_id, now) or self._take(
                    session, delivery_id, now
                ):
                    claimed.append(delivery_id)
            if offset is None:  # SQLite: every dispatcher runs on this host
                for delivery_id, owner in self._stranded(session, now):
                    if len(claimed) < settings.dispatch_batch and self._take_over(
                        session, delivery_id, now, stranded_by=owner
                    ):
                        claimed.append(delivery_id)
        return claimed

    def _stranded(self, session: Session, now: int) -> list[tuple[int, str]]:
        """Deliveries left ``sending`` under a lease ending later than any lease taken
        now could (it was taken while this host's clock ran ahead, then the clock was
        set right) by a dispatcher that has stopped: otherwise they would wait,
        unclaimed, until the clock caught up. A running owner keeps
        its delivery (its attempt ends within its own deadline, and it records it): a
        dispatcher holds a lock on a file of its own from its first claim on
        (:meth:`_announce`), which the kernel lets go when its process ends."""
        database = self.node.engine.url.database
        if not database or database == ":memory:":
            return []
        rows = session.execute(
            select(Delivery.id, Delivery.lease_owner)
            .where(self._lease_ahead(now))
            .order_by(Delivery.id)
        ).all()  # all of them (few): a running owner's first must not hide the rest
        return [(id_, owner) for id_, owner in rows if owner and _stopped(database, owner)]

    def _announce(self) -> None:
        """On SQLite, before the first claim: hold a lock on a file of this dispatcher's
        own beside the database for as long as it exists, so that another can tell once
        it has stopped (:func:`_stopped`). Without the lock (a file system without
        ``flock``) nobody ever takes a delivery over from it before its lease ends."""
        database = self.node.engine.url.database
        if self._announced or self.node.engine.dialect.name != "sqlite":
            return
        self._announced = True  # once: a failure is said once, and stays so
        if not database or database == ":memory:":
            return
        path = _presence_path(database, self.worker)
        # Locked before it is put in place: no file at that path is ever unheld while
        # its dispatcher runs (a file of a killed one of the same id is replaced).
        placing = f"{path}.{os.getpid()}.{id(self):x}"
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            presence = os.open(placing, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as e:
            log.warning("dispatcher %s cannot create %s (%s)", self.worker, placing, e)
            return
        try:
            fcntl.flock(presence, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(placing, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(placing)
            os.close(presence)
            log.warning("dispatcher %s cannot hold %s (%s)", self.worker, path, e)
            return
        self._presence = weakref.finalize(self, _let_go, presence, path, os.getpid())

    def _lease_ahead(self, now: int):  # type: ignore[no-untyped-def]
        return and_(
            Delivery.state == DeliveryState.SENDING,
            Delivery.lease_until > now + self.node.settings.dispatch_lease,
        )

    def _claim_values(self, now: int) -> dict[str, object]:
        return {
            "state": DeliveryState.SENDING,
            "lease_owner": self.worker,
            "lease_until": now + self.node.settings.dispatch_lease,
            "updated_at": now,
            "attempts": Delivery.attempts + 1,
        }

    def _take(self, session: Session, delivery_id: int, now: int) -> bool:
        """Claim a queued or retrying delivery that is due."""
        result = session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, self._due(now))
            .values(**self._claim_values(now))
            .execution_options(synchronize_session=False)
        )
        session.commit()
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def _take_over(
        self, session: Session, delivery_id: int, now: int, *, stranded_by: str | None = None
    ) -> bool:
        """Claim a delivery left ``sending`` by a dispatcher whose lease ran out (or,
        ``stranded_by``, by that stopped dispatcher under a lease taken while the clock
        ran ahead: :meth:`_stranded`). Its attempt ended unrecorded, so the envelope may
        have arrived: :meth:`deliver` records that first (``attempt-interrupted``), and
        the envelope is not replaced by a new one (a new id) until the recipient proves
        it holds none (:func:`gateway.outbox.may_have_arrived`)."""
        left = (
            self._lease_ran_out(now)
            if stranded_by is None
            else and_(self._lease_ahead(now), Delivery.lease_owner == stranded_by)
        )
        result = session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, left)
            .values(**self._claim_values(now))
            .execution_options(synchronize_session=False)
        )
        session.commit()
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        self._taken_over.add(delivery_id)
        return True

    def _record_interruption(self, delivery_id: int, now: int) -> None:
        """The event of :meth:`_take_over`, recorded by :meth:`deliver` once it has renewed
        the lease, in a transaction of its own: it appends to the audit log, whose lock
        (PostgreSQL) a transaction holding the delivery's row must not wait for, as
        re-sealing takes that lock first."""
        with self.node.sessions() as session:
            delivery = session.get(Delivery, delivery_id)
            assert delivery is not None
            record_event(
                session,
                delivery,
                DeliveryState.SENDING,
                code=INTERRUPTED,
                detail="the attempt before this one ended without an outcome (its "
                "dispatcher stopped, or its lease ran out first); the envelope may have "
                "arrived",
                worker=self.worker,
                at=now,
            )
            session.commit()

    # ------------------------------------------------------------------ sending

    def _send(
        self,
        trust_list: TrustList,
        delivery: Delivery,
        envelope: SealedEnvelope,
        parsed: Envelope,
        now: int,
        *,
        old_key: bool = False,
    ) -> Outcome:
        peer = trust_list.node(delivery.recipient)
        if peer is None:
            return Outcome(
                DeliveryState.RETRYING,
                "unknown-recipient",
                f"{delivery.recipient} is not in trust list version {trust_list.version}",
            )
        if peer.endpoint.startswith("http://") and not self.node.settings.allow_insecure_http:
            return Outcome(
                DeliveryState.RETRYING,
                "insecure-endpoint",
                f"{delivery.recipient}'s endpoint {peer.endpoint} is plain HTTP; the trust list "
                "must list an https:// endpoint (allow_insecure_http is for tests and demos)",
            )
        url = peer.endpoint.rstrip("/") + "/xb1/envelopes"
        timeout = self.node.settings.peer_timeout
        limit = 2 * timeout
        # The lease again, from now: whatever came since the claim (re-sealing, a slow
        # database) does not eat into it, and the attempt ends before it does.
        renewed_at = max(now, int(time.time()))
        if not self._renew_lease(delivery.id, renewed_at):
            return _lease_lost(delivery.id)
        left = renewed_at + self.node.settings.dispatch_lease - time.time()
        status: int | None = None  # once the status line and headers have arrived
        body = b""
        finished: float | None = None  # when the whole answer had been read
        failure: BaseException | None = None
        with peer_http.deadline(time.monotonic() + max(0.0, min(limit, left))) as attempt:
            try:
                with self.http.post(
                    url,
                    data=envelope.wire,
                    timeout=timeout,
                    headers={"Content-Type": "application/xb1+json"},
                    allow_redirects=False,
                    stream=True,
                ) as answer:
                    status = answer.status_code
                    body, finished = _read_answer(answer, deadline=attempt.at)
            except Exception as e:  # noqa: BLE001 - anything, once the deadline cut it short
                if finished is None and not (attempt.expired or isinstance(e, _BROKEN)):
                    raise
                if finished is None:
                    failure = e
        if finished is not None and finished <= attempt.at:
            pass  # a whole answer in time counts, whatever happened to the connection after
        elif attempt.expired or finished is not None or isinstance(failure, AnswerTooSlow):
            # The deadline cut the attempt short, or the answer was complete only after
            # it: one still arriving then does not count.
            late = f"no complete answer within {limit:g} s"
            if status is None:
                return Outcome(
                    DeliveryState.RETRYING, "peer-unreachable", f"{url}: {late}; nothing answered"
                )
            return Outcome(
                DeliveryState.RETRYING,
                "answer-unreadable",
                f"{url} answered HTTP {status}, but {late}",
            )
        elif failure is not None:
            if status is None:
                return Outcome(
                    DeliveryState.RETRYING,
                    "peer-unreachable",
                    f"{url}: {type(failure).__name__}: {failure}"[:500],
                )
            # The envelope may have arrived: the retry sends the same bytes, and the
            # peer answers a retry with the receipt it stored.
            return Outcome(
                DeliveryState.RETRYING,
                "answer-unreadable",
                f"{url} answered HTTP {status}, then the answer broke off: "
                f"{type(failure).__name__}: {failure}"[:500],
            )
        assert status is not None
        if status >= 500 or status < 200:
            # What the peer says of it (a node of this project: its error code and why),
            # shown only: anyone on the path can write it.
            said = body[:300].decode("utf-8", "replace").strip()
            return Outcome(
                DeliveryState.RETRYING,
                "peer-error",
                f"{url} answered HTTP {status}" + (f": {said}" if said else ""),
            )
        return self._judge_answer(trust_list, delivery, parsed, status, body, now, old_key=old_key)

    def _judge_answer(
        self,
        trust_list: TrustList,
        delivery: Delivery,
        parsed: Envelope,
        status: int,
        body: bytes,
        now: int,
        *,
        old_key: bool = False,
    ) -> Outcome:
        try:
            receipt = verify_receipt(body, trust=trust_list.keys, now=now, envelope=parsed)
        except ReceiptInvalid as e:
            if _newer_list_may_explain(e):
                # The recipient signs with its newest key, which a version of the list
                # this node has not installed yet may carry (a rotation reaches nodes at
                # different times; its stored receipt answers every retry): its list is
                # fetched from it before the next attempt (follow_receipt_signers).
                self._unknown_signers.add(delivery.recipient)
            if status == 200:
                return Outcome(DeliveryState.RETRYING, "receipt-invalid", str(e))
            return Outcome(
                DeliveryState.RETRYING,
                _error_code(body) or "peer-refused",
                f"HTTP {status} without a signed receipt: {body[:300].decode('utf-8', 'replace')}",
            )
        if receipt.signer.node != delivery.recipient:
            return Outcome(
                DeliveryState.RETRYING,
                "receipt-invalid",
                f"receipt signed by {receipt.signer.node}, not {delivery.recipient}",
            )
        if receipt.accepted:
            return Outcome(
                DeliveryState.DELIVERED,
                None,
                "accepted; receipt verified",
                receipt=body,
                verified=True,
            )
        if old_key and receipt.reason in CANNOT_OPEN:
            # Refused at step 7, after the recipient's replay check found nothing
            # stored: it does not hold this envelope, so a new one may be sealed.
            return Outcome(
                DeliveryState.RETRYING,
                RESEAL_NEEDED,
                f"{delivery.recipient} cannot open the envelope sealed to its old key "
                f"({receipt.reason}) and has not stored it; it is sealed again at the "
                "next attempt",
                receipt=body,
                verified=True,
            )
        if receipt.reason in TRANSIENT_REJECTIONS:
            return Outcome(
                DeliveryState.RETRYING,
                receipt.reason,
                f"{delivery.recipient} refused it as {receipt.reason}; will retry",
                receipt=body,
                verified=True,
            )
        return Outcome(
            DeliveryState.REJECTED,
            receipt.reason,
            f"{delivery.recipient} refused it with a signed receipt: {receipt.reason}",
            receipt=body,
            verified=True,
        )

    def _record(self, delivery_id: int, outcome: Outcome, now: int) -> Outcome | None:
        """Record ``outcome`` if the delivery is still this dispatcher's: the outcome
        recorded (a retry of a message withdrawn meanwhile ends as withdrawn), or None."""
        settings = self.node.settings
        with self.node.sessions() as session:
            delivery = session.get(Delivery, delivery_id)
            if (
                delivery is None
                or delivery.lease_owner != self.worker
                or delivery.state != DeliveryState.SENDING
            ):
                log.warning(
                    "lost the lease on delivery %s; outcome %s not recorded",
                    delivery_id,
                    outcome.state,
                )
                return None
            withdrawn_by = _withdrawn_by(delivery.message)
            if outcome.state == DeliveryState.RETRYING and withdrawn_by is not None:
                # Withdrawn during this attempt, which did not deliver it: not sent again.
                # Unless a signed refusal proves otherwise, it may have arrived all the
                # same (a timeout, a lost answer), as an earlier attempt may have.
                arrived = outcome.code != RESEAL_NEEDED or may_have_arrived(
                    session, delivery_id, any_envelope=True, proven=True
                )
                outcome = _withdrawn(withdrawn_by, outcome, arrived=arrived)
            elif (
                outcome.state == DeliveryState.REJECTED
                and outcome.verified
                and outcome.code not in AFTER_REPLAY_CHECK
                and may_have_arrived(session, delivery_id, any_envelope=True)
            ):
                # Refused before the recipient looked for a stored copy, after an attempt
                # that may have reached it: the message must not be submitted again
                # blindly (a second copy, under a new id).
                outcome = replace(
                    outcome,
                    detail=f"{outcome.detail}; an earlier attempt may have reached "
                    f"{delivery.recipient} all the same: ask its operator before submitting "
                    "the message again",
                )
            values: dict[str, object] = {
                "state": outcome.state,
                "last_code": None if outcome.code is None else printable(outcome.code),
                "last_detail": None if outcome.detail is None else printable(outcome.detail),
                "lease_owner": None,
                "lease_until": None,
                "updated_at": now,
            }
            if outcome.receipt is not None:
                values["receipt"] = outcome.receipt
                values["receipt_verified"] = outcome.verified
            if outcome.state == DeliveryState.DELIVERED:
                values["delivered_at"] = now
            if outcome.state == DeliveryState.RETRYING:
                delay = backoff_delay(
                    delivery.attempts, settings.backoff_base, settings.backoff_cap, self.rng
                )
                values["next_attempt_at"] = now + max(1, int(delay))
            result = session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, *self._still_mine())
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                return None
            record_event(
                session,
                delivery,
                outcome.state,
                code=outcome.code,
                detail=outcome.detail,
                worker=self.worker,
                at=now,
                unstored_proven=outcome.verified
                and (
                    outcome.code == RESEAL_NEEDED
                    or (
                        outcome.state == DeliveryState.REJECTED
                        and outcome.code in AFTER_REPLAY_CHECK
                    )
                ),
            )
            session.commit()
        return outcome

    def deliver(self, delivery_id: int, now: int | None = None) -> Outcome:
        at = int(time.time()) if now is None else now
        taken_over = delivery_id in self._taken_over
        self._taken_over.discard(delivery_id)
        with self.node.sessions() as session:
            delivery = session.get(Delivery, delivery_id)
            assert delivery is not None
            envelope = delivery.envelope
            typ = delivery.message.typ
            body_json = delivery.message.body_json
            corrects_type = delivery.message.corrects_type
            if body_json is None and corrects_type is not None:
                # Purged: a withdrawal (it withdrew a message) carries no data and is
                # never held by a type's suspension; a correction carries its type's.
                withdrew = session.scalar(
                    select(OutboundMessage.id).where(
                        OutboundMessage.state == "withdrawn",
                        OutboundMessage.state_by == delivery.message_id,
                    )
                )
                corrects_type = None if withdrew is not None else corrects_type
            withdrawn_by = _withdrawn_by(delivery.message)
            session.expunge_all()
        if not self._renew_lease(delivery_id, at):
            # Another dispatcher claimed it after this one's lease ran out (a long batch
            # behind slow peers): it is that one's to send now, not this one's.
            return _lease_lost(delivery_id)
        if taken_over:  # still this dispatcher's, its lease just renewed
            self._record_interruption(delivery_id, at)
        if body_json:
            carried = sovereignty.carried_type(typ, json.loads(body_json))
        else:
            # Purged while the delivery was open (its envelope kept): the type a
            # correction corrects is kept with the message.
            carried = corrects_type
        decision = sovereignty.covering(self.node.suspensions(), delivery.recipient, typ, carried)
        try:
            trust_list = self.node.require_sending_allowed(at)
            if withdrawn_by is not None:
                # Withdrawn while this delivery was being sent (its attempt then did not
                # deliver it), or claimed again after a dispatcher stopped mid-send.
                with self.node.sessions() as session:
                    arrived = may_have_arrived(session, delivery_id, any_envelope=True)
                outcome = _withdrawn(withdrawn_by, arrived=arrived)
            elif not envelope.wire:
                # Erased by a purge that raced an operator's retry (gateway/outbox.py):
                # the retention ended, so it is not sent, and says so once.
                outcome = Outcome(
                    DeliveryState.EXPIRED,
                    "purged",
                    "the message was purged when its retention ended, before this delivery "
                    "was delivered; it is not sent",
                )
            elif at > envelope.exp:
                # Before any re-sealing: a new envelope must not outlive the message.
                outcome = Outcome(
                    DeliveryState.EXPIRED,
                    "expired",
                    f"envelope expired at {envelope.exp} before {delivery.recipient} accepted it",
                )
            elif decision is not None:
                outcome = Outcome(
                    DeliveryState.RETRYING,
                    "suspended",
                    f"held: this node suspended {decision.scope} {decision.value} "
                    f"(decision {decision.id}); it goes out when that is lifted",
                )
            elif (denied := self._denied_now(delivery, at)) is not None:
                outcome = Outcome(
                    DeliveryState.REJECTED,
                    "policy-denied",
                    f"not sent: this node's policy no longer lets it go to "
                    f"{delivery.recipient}: {denied[1]} (rule {denied[0]}); retry it once "
                    "the policy does",
                )
            else:
                current = self._current_envelope(trust_list, delivery, envelope, at)
                if current is None:
                    outcome = Outcome(
                        DeliveryState.EXPIRED,
                        "expired",
                        f"envelope expires at {envelope.exp}: keys changed under it, and "
                        f"an envelope sealed anew for {delivery.recipient} would have no "
                        "time left before the message's expiry",
                    )
                else:
                    envelope, parsed, old_key = current
                    outcome = self._send(
                        trust_list, delivery, envelope, parsed, at, old_key=old_key
                    )
        except _LeaseLost:
            outcome = _lease_lost(delivery_id)
        except (NodeStateError, KeyFileError, TrustError) as e:
            outcome = Outcome(DeliveryState.RETRYING, e.code, e.message)
        except Exception as e:  # noqa: BLE001 - recorded, with the traceback in the log
            # A defect of ours, or an answer nobody foresaw: the delivery must not stay
            # "sending" with no reason, and the other deliveries must still go out.
            log.exception("delivery %s failed unexpectedly", delivery_id)
            outcome = Outcome(
                DeliveryState.RETRYING, "internal-error", f"{type(e).__name__}: {e}"[:500]
            )
        at_end = int(time.time()) if now is None else now
        try:
            recorded = self._record(delivery_id, outcome, at_end)
        except OperationalError:
            raise  # the database is down or locked: the run loop waits and tries again
        except SQLAlchemyError as e:
            # The outcome itself could not be stored (a defect of ours): the delivery
            # must not stay "sending" until its lease runs out, and be taken over and
            # fail alike for ever, nor stop the dispatcher; what is stored instead is
            # plain, and the log has the rest.
            log.exception("the outcome of delivery %s could not be recorded", delivery_id)
            outcome = Outcome(
                DeliveryState.RETRYING,
                "internal-error",
                f"the outcome {outcome.code or outcome.state} could not be recorded "
                f"({type(e).__name__}); see the dispatcher's log",
            )
            recorded = self._record(delivery_id, outcome, at_end)
        return recorded or outcome

    def _denied_now(self, delivery: Delivery, at: int) -> tuple[str, str] | None:
        """The sharing policy judged again before the envelope leaves (outbox.denied_now);
        a denial is recorded at once."""
        with self.node.sessions() as session:
            message = session.get(OutboundMessage, delivery.message_id)
            assert message is not None
            denied = denied_now(session, self.node.policy(), message, delivery.recipient, at)
            session.commit()
        return denied

    def _still_mine(self):  # type: ignore[no-untyped-def]
        """The conditions under which a claimed delivery is still this dispatcher's."""
        return (Delivery.lease_owner == self.worker, Delivery.state == DeliveryState.SENDING)

    def _renew_lease(self, delivery_id: int, now: int) -> bool:
        """Extend this dispatcher's lease from now, just before sending; False if the
        delivery is no longer this dispatcher's (its lease ran out and another claimed it)."""
        with self.node.sessions() as session:
            result = session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, *self._still_mine())
                .values(lease_until=now + self.node.settings.dispatch_lease)
                .execution_options(synchronize_session=False)
            )
            session.commit()
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def _maybe_checkpoint(self, since: float) -> float:
        """Sign an audit checkpoint when enough entries or time have accumulated. A
        failure is tried again at the next round, and logged once a minute at most (a
        node that may sign nothing until a new trust list comes would fail every round)."""
        try:
            made = audit.checkpoint(self.node, min_new=_checkpoint_due(self.node, since))
        except (GatewayError, TrustError, KeyFileError) as e:
            said, self._checkpoint_failure = self._checkpoint_failure, (e.code, time.monotonic())
            if said is not None and said[0] == e.code and time.monotonic() - said[1] < 60:
                self._checkpoint_failure = said  # said less than a minute ago
            else:
                log.warning("audit checkpoint failed: [%s] %s", e.code, e)
            return since
        self._checkpoint_failure = None
        return time.monotonic() if made is not None else since

    # ------------------------------------------------------------------ re-sealing

    @staticmethod
    def _stale(
        trust_list: TrustList, node_id: str, recipient: str, header: Header, now: int
    ) -> tuple[str, str] | None:
        """Why the stored envelope may no longer be sent, or None, with what happened:
        ``ours`` (our signing key), ``revoked`` (the recipient's encryption key) or
        ``replaced`` (the recipient's key retired past its window or dropped). A key
        revoked, retired past its window or dropped from the trust list since sealing
        makes the envelope unusable (PROTOCOL §5); a queued message must not be lost
        for that."""
        try:
            trust_list.keys.signing_key(node_id, header.sender.kid, header.iat, now)
        except TrustError as e:
            return "ours", f"our signing key {header.sender.kid} is no longer usable ({e.code})"
        entry = next((e for e in header.to if e.node == recipient), None)
        listed = {k.kid: k for k in trust_list.keys.keys_of(recipient)}
        key = listed.get(entry.kid) if entry is not None else None
        if key is None or key.use != "enc":
            return "replaced", f"{recipient}'s encryption key is no longer in the trust list"
        if key.status == "revoked":
            return "revoked", f"{recipient}'s encryption key {key.kid} is revoked"
        if key.status == "retired" and now > key.not_after:
            return "replaced", f"{recipient}'s encryption key {key.kid} is retired"
        return None

    def _current_envelope(
        self, trust_list: TrustList, delivery: Delivery, envelope: SealedEnvelope, now: int
    ) -> tuple[SealedEnvelope, Envelope, bool] | None:
        """The stored envelope, or, if keys changed under it, a new one sealed under the
        current keys for this recipient alone (recorded as a ``resealed`` event); with
        its parsed form, for checking the receipt, and whether it is the stored
        envelope sent again although the recipient's key changed under it. None if a
        new one is needed but the message's expiry leaves no time for it."""
        parsed = step2_parse_header(*step1_parse_outer(envelope.wire, self.node.limits))
        header = parsed.header
        stale = self._stale(trust_list, self.node.id, delivery.recipient, header, now)
        if stale is None:
            return envelope, parsed, False
        what, reason = stale
        with self.node.sessions() as session:
            if what == "replaced" and may_have_arrived(session, delivery.id):
                # A new envelope (a new id) would be stored beside the old one if that
                # arrived. The same bytes again: the recipient answers with the receipt
                # it stored, or, if it cannot open them, with a signed refusal that
                # proves it did not store them, and the next attempt seals anew. Not
                # for a revoked key: bytes sealed to a key that may be compromised are
                # not sent (again) (decision 0007).
                return envelope, parsed, True
            if header.exp <= now:
                # Not expired yet (that is after exp), but a new envelope keeps the
                # message's expiry and needs iat < exp: sealed now, it cannot. Its iat
                # is not set back to make room: iat is when it was sealed, and the
                # signing key must be valid then.
                return None
            # The new envelope's hashes go into the audit log (below) after rows changed:
            # take the log's lock first, as every such transaction does (PostgreSQL).
            audit.lock(session)
            message = session.get(OutboundMessage, delivery.message_id)
            assert message is not None
            if message.body_json is None:
                raise NodeStateError(
                    "reseal-impossible",
                    f"{reason}, and the message body was purged, so it cannot be sealed again",
                )
            key = trust_list.keys.encryption_key(delivery.recipient, now)
            fresh = seal(
                typ=message.typ,
                payload=message.body_json.encode("utf-8"),
                sender=self.node.id,
                signing_key=self.node.signing_pair(now),
                recipients=[Recipient(delivery.recipient, key.kid, key.pub)],
                tl=trust_list.version,
                iat=now,
                # The message's expiry stays what it was: re-sealing is not a new message.
                ttl=header.exp - now,
            )
            replacement = SealedEnvelope(
                id=fresh.header.id,
                message_id=message.id,
                wire=fresh.to_wire(),
                ph=fresh.ph,
                ch=fresh.ch,
                iat=fresh.header.iat,
                exp=fresh.header.exp,
                tl=fresh.header.tl,
            )
            session.add(replacement)
            session.flush()  # the new envelope's row, before the delivery points at it
            moved = session.execute(
                update(Delivery)
                .where(Delivery.id == delivery.id, *self._still_mine())
                .values(envelope_id=replacement.id)
                .execution_options(synchronize_session=False)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()  # another dispatcher has it now: nothing of this stays
                raise _LeaseLost
            row = session.get(Delivery, delivery.id)
            assert row is not None
            record_event(
                session,
                row,
                DeliveryState.SENDING,
                code=RESEALED,
                at=now,
                worker=self.worker,
                detail=f"{reason}; envelope {header.id} replaced by {replacement.id}",
            )
            # Evidence: an exported bundle holds every envelope of the message, and each
            # must be one the log names (gateway/audit/evidence.py).
            audit.record(
                session,
                "message-resealed",
                at=now,
                id=message.id,
                envelope=replacement.id,
                replaces=header.id,
                to=delivery.recipient,
                reason=reason,
                ph=b64e(fresh.ph),
                ch=b64e(fresh.ch),
            )
            session.commit()
            session.expunge(replacement)
        return replacement, fresh, False

    def _index_h2(self) -> None:
        """Record H2 identifiers of new received messages ahead of the next submission
        (a submission's own check records what is left)."""
        try:
            onward.index_pending(self.node.sessions, int(time.time()), batches=INDEX_BATCHES)
        except SQLAlchemyError as e:  # a lock timeout, a deadlock: the next round retries
            log.warning("recording H2 identifiers failed, retried next round: %s", e)

    def _purge(self) -> None:
        try:
            with self.node.sessions() as session:
                done = purge.run(session, self.node.policy(), by=f"dispatcher {self.worker}")
        except GatewayError as e:
            log.warning("purge failed: [%s] %s", e.code, e)
            return
        refused = sum(item.direction == "refused" for item in done)
        if len(done) > refused:
            log.info(
                "purged the payloads of %d message(s) whose retention ended", len(done) - refused
            )
        if refused:
            log.info("erased the kept bytes of %d refused envelope(s)", refused)

    def run_once(self, now: int | None = None) -> list[Outcome]:
        """Claim what is due and send it, then follow the trust list of recipients whose
        receipts were signed with a key this node's list does not know; returns the
        outcomes."""
        at = int(time.time()) if now is None else now
        outcomes = [self.deliver(delivery_id, now) for delivery_id in self.claim(at)]
        self.follow_receipt_signers()
        return outcomes

    def follow_receipt_signers(self) -> None:
        """Fetch the trust list of each recipient whose receipt was signed with a key this
        node's list does not know, or not as valid (a version it has not installed yet),
        from that recipient only and at most once per ``RECEIPT_FOLLOW_INTERVAL`` each: a
        broken peer, or anyone on the path (nothing of the receipt was verified), costs
        one fetch from it per interval. A failed fetch is logged; no alarm, as no signed
        announcement says that a newer version exists."""
        pending, self._unknown_signers = self._unknown_signers, set()
        if not pending:
            return
        if self._follower is None:  # made once: it mounts its adapters on the session
            self._follower = TrustFollower(self.node, self.http)
        follower = self._follower
        for peer in sorted(pending):
            last = self._signers_followed.get(peer)
            if last is not None and time.monotonic() - last < RECEIPT_FOLLOW_INTERVAL:
                continue
            self._signers_followed[peer] = time.monotonic()
            try:
                installed = follower.follow(peer)
            except (GatewayError, TrustError) as e:
                log.warning(
                    "a receipt of %s is signed with a key this node's trust list does not "
                    "list as valid, and fetching its trust list failed: [%s] %s",
                    peer,
                    e.code,
                    e,
                )
                continue
            if installed is not None:
                log.info(
                    "trust list version %s installed from %s (its receipts are signed with "
                    "a key it lists)",
                    installed.version,
                    peer,
                )

    def run(self, *, stop_after: float | None = None, until_idle: bool = False) -> None:
        """Loop until stopped (or until nothing is due, with ``until_idle``). While
        this host's clock is skewed it logs the error and waits; with ``until_idle``
        it raises :class:`ClockSkew` instead, as nothing would ever become idle. A round
        that fails on the database (down, restarting, or locked past its busy timeout)
        is logged (with its traceback the first time) and tried again after
        ``DATABASE_PAUSE``, doubled after each further failure up to
        ``DATABASE_PAUSE_LONGEST``; with ``until_idle`` the error is raised."""
        started = time.monotonic()
        rounds = _Rounds(TrustFollower(self.node, self.http), time.monotonic())
        failed = 0  # rounds failed on the database in a row
        while stop_after is None or time.monotonic() - started < stop_after:
            try:
                outcomes = self._round(rounds, until_idle=until_idle)
            except OperationalError as e:
                if until_idle:
                    raise
                failed += 1
                pause = database_pause(failed)
                log.error(
                    "the database could not be used (%s); the dispatcher tries again in %g s",
                    " ".join(str(e.orig).split())[:300],
                    pause,
                    exc_info=failed == 1,  # the traceback once, not at every try
                )
                _pause(pause)
                continue
            if failed:
                log.warning("the database is usable again after %d failed rounds", failed)
                failed = 0
            if not outcomes:
                if until_idle:
                    return
                time.sleep(self.node.settings.dispatch_interval)

    def _round(self, rounds: _Rounds, *, until_idle: bool) -> list[Outcome]:
        """One round of :meth:`run`: the periodic duties that are due, then what is
        due to be sent; the outcomes."""
        try:
            rounds.follower.run_once()
        except (GatewayError, TrustError) as e:  # e.g. no trust list installed yet
            log.warning("trust list follow-up failed: [%s] %s", e.code, e)
        rounds.last_checkpoint = self._maybe_checkpoint(rounds.last_checkpoint)
        # A duty's time is taken once it has run: one that failed on the database is
        # tried again in the next round, not an interval later.
        if time.monotonic() - rounds.last_witness >= self.node.settings.checkpoint_interval:
            began = time.monotonic()
            try:
                Witness(self.node, self.http).run_once()
            except (GatewayError, TrustError) as e:
                log.warning("witnessing failed: [%s] %s", e.code, e)
            rounds.last_witness = began
        # Every round (one indexed query when nothing is new), so that an agency's next
        # submission finds little left to record in its own transaction.
        self._index_h2()
        if time.monotonic() - rounds.last_purge >= PURGE_INTERVAL:
            began = time.monotonic()
            self._purge()
            rounds.last_purge = began
        try:
            return self.run_once()
        except ClockSkew as e:
            log.error("[%s] %s", e.code, e.message)
            if until_idle:  # it would never be idle: say so instead of waiting
                raise
            return []


@dataclass
class _Rounds:
    """What :meth:`Dispatcher.run` keeps from one round to the next."""

    follower: TrustFollower
    last_checkpoint: float
    last_witness: float = float("-inf")
    last_purge: float = float("-inf")


class ClockSkew(GatewayError):
    """This host's clock is too far off the database server's to judge leases."""

    def __init__(self, message: str) -> None:
        super().__init__("clock-skew", message, status=503)


class _LeaseLost(Exception):
    """The delivery is another dispatcher's now (its lease ran out and it was claimed)."""


def _lease_lost(delivery_id: int) -> Outcome:
    log.warning(
        "lease on delivery %s ran out before it was sent and another dispatcher claimed "
        "it; not sent by this one",
        delivery_id,
    )
    return Outcome(
        DeliveryState.SENDING,
        "lease-lost",
        "the lease ran out before sending; another dispatcher has it now",
    )


def _withdrawn_by(message: OutboundMessage) -> str | None:
    """The correction that withdrew ``message``, or None."""
    return message.state_by if message.state == "withdrawn" else None


def _withdrawn(by: str, attempt: Outcome | None = None, *, arrived: bool) -> Outcome:
    return Outcome(
        DeliveryState.EXPIRED,
        "withdrawn",
        withdrawn_detail(by, arrived),
        receipt=attempt.receipt if attempt else None,
        verified=attempt.verified if attempt else False,
    )


PURGE_INTERVAL = 3600.0  # seconds between purges of payloads whose retention ended


def _checkpoint_due(node: Node, since: float) -> int:
    """How many new entries make a checkpoint due now: the configured count, or one
    once the interval has passed."""
    if time.monotonic() - since >= node.settings.checkpoint_interval:
        return 1
    return node.settings.checkpoint_entries


def _error_code(body: bytes) -> str | None:
    """The ``error`` member of a peer's unsigned JSON answer, if it is a rejection code of
    PROTOCOL §3 (what §7 has a peer answer before it has authenticated the sender).
    Anyone on the path can write an unsigned answer, so no other string becomes a
    delivery's code: not one the dispatcher gives a meaning (``reseal-needed`` is a
    signed proof that nothing was stored). The whole answer is in the detail anyway."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python parses
        return None
    code = parsed.get("error") if isinstance(parsed, dict) else None
    return code if isinstance(code, str) and code in REJECTION_CODES else None
