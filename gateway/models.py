"""Storage model of one node (SQLAlchemy 2, SQLite or PostgreSQL).

Outbound: an ``OutboundMessage`` is what an agency submitted; it is sealed into
one ``SealedEnvelope`` addressed to every recipient, and each recipient gets a
``Delivery`` row (the transactional outbox) whose history is kept in
``DeliveryEvent``. Inbound: ``InboundMessage`` holds every envelope this node
accepted (the replay table of PROTOCOL §3 step 6); ``InboundRejection`` keeps
every refused envelope with its code so nothing a peer sent is silently lost.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


# Integer primary keys are 32-bit in PostgreSQL; larger ids cannot exist, and asking
# the database for one is an error there, so services answer "not found" first.
MAX_ROW_ID = 2**31 - 1


def is_row_id(value: int) -> bool:
    return 1 <= value <= MAX_ROW_ID


class DeliveryState:
    QUEUED = "queued"
    SENDING = "sending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    REJECTED = "rejected"
    EXPIRED = "expired"

    ALL = (QUEUED, SENDING, DELIVERED, RETRYING, REJECTED, EXPIRED)
    FINAL = (DELIVERED, REJECTED, EXPIRED)


class ApiToken(Base):
    """An API token. Only the SHA-256 of the secret is stored.

    ``role`` is ``agency`` (the agency API, for the agency named in ``agency``),
    ``admin`` (the admin API, reading and changing) or ``observer`` (the admin API,
    reading only); for the last two ``agency`` names the holder."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(24), default="agency", server_default="agency")
    label: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Set for a person's token: its role is the person's role (gateway/access.py).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)


class User(Base):
    """A person who uses the node, with one role at one agency (gateway/access.py).
    Never deleted: a disabled user's tokens stop working, and the record stays for
    the audit trail."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    agency: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(200))
    disabled_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    disabled_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class OutboundMessage(Base):
    __tablename__ = "outbound_messages"
    __table_args__ = (
        UniqueConstraint("agency", "idempotency_key", name="uq_outbound_idempotency"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    typ: Mapped[str] = mapped_column(String(40))
    agency: Mapped[str] = mapped_column(String(64), index=True)
    body_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    # When its retention ended and the payload was removed (gateway/purge.py).
    purged_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The agency type it was minimised for; its corrections are minimised alike.
    audience: Mapped[str | None] = mapped_column(String(24), nullable=True)
    # What that removed before sealing: a JSON list of [rule, field path] pairs (None:
    # nothing), shown with the message (a repeated submission's answer too).
    minimised: Mapped[str | None] = mapped_column(Text, nullable=True)
    # "corrected" or "withdrawn" by the correction/1 message ``state_by``.
    state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    state_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # Of a correction: its body's corrected_at (kept when retention purges the body).
    corrected_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Of a correction: the type it corrects (who may see it: gateway/access.py).
    corrects_type: Mapped[str | None] = mapped_column(String(40), nullable=True)

    envelopes: Mapped[list[SealedEnvelope]] = relationship(back_populates="message")
    deliveries: Mapped[list[Delivery]] = relationship(
        back_populates="message", order_by="Delivery.recipient"
    )


class SealedEnvelope(Base):
    """The exact bytes sent. A retry resends these bytes unchanged."""

    __tablename__ = "envelopes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("outbound_messages.id"), index=True)
    wire: Mapped[bytes] = mapped_column(LargeBinary)
    ph: Mapped[bytes] = mapped_column(LargeBinary(32))
    ch: Mapped[bytes] = mapped_column(LargeBinary(32))
    iat: Mapped[int] = mapped_column(BigInteger)
    exp: Mapped[int] = mapped_column(BigInteger)
    tl: Mapped[int] = mapped_column(Integer)

    message: Mapped[OutboundMessage] = relationship(back_populates="envelopes")


class Delivery(Base):
    """One recipient of one outbound message: the outbox row the dispatcher works on."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("message_id", "recipient", name="uq_delivery_recipient"),
        Index("ix_deliveries_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("outbound_messages.id"))
    envelope_id: Mapped[str] = mapped_column(ForeignKey("envelopes.id"))
    recipient: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[int] = mapped_column(BigInteger)
    lease_owner: Mapped[str | None] = mapped_column(String(80), nullable=True)
    lease_until: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    last_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    receipt: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    receipt_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    delivered_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    message: Mapped[OutboundMessage] = relationship(back_populates="deliveries")
    envelope: Mapped[SealedEnvelope] = relationship()
    events: Mapped[list[DeliveryEvent]] = relationship(
        back_populates="delivery", order_by="DeliveryEvent.id"
    )


class DeliveryEvent(Base):
    """Every state change of a delivery, with its reason: the visible history."""

    __tablename__ = "delivery_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"), index=True)
    at: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(80), nullable=True)
    # The recipient's signed refusal proved it stored nothing (a `rejected` answer, or
    # `reseal-needed`); a local decision not to send proves nothing (outbox.py).
    unstored_proven: Mapped[bool | None] = mapped_column(Boolean, nullable=True)

    delivery: Mapped[Delivery] = relationship(back_populates="events")


class InboundMessage(Base):
    """An accepted envelope. (sender, envelope_id) is unique: the replay table."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("sender", "envelope_id", name="uq_inbound_sender_id"),
        # The messages whose H2 identifiers are to be recorded, in id order (onward.py).
        Index("ix_inbound_messages_h2_pending", "h2_keys_version", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sender: Mapped[str] = mapped_column(String(20))
    envelope_id: Mapped[str] = mapped_column(String(36))
    typ: Mapped[str] = mapped_column(String(40))
    ph: Mapped[bytes] = mapped_column(LargeBinary(32))
    ch: Mapped[bytes] = mapped_column(LargeBinary(32))
    iat: Mapped[int] = mapped_column(BigInteger)
    exp: Mapped[int] = mapped_column(BigInteger)
    wire: Mapped[bytes] = mapped_column(LargeBinary)
    body_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    receipt: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[int] = mapped_column(BigInteger, index=True)
    sender_kid: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    # First read by an agency ("processed"); until then a revocation can still hold it.
    fetched_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    quarantined_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    quarantine_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    released_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    release_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The order of releases (1, 2, ...): agency pagers that passed a held message
    # find it again by this (``released_after`` in the inbox API).
    released_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    # When its retention ended and body and envelope were removed (gateway/purge.py);
    # metadata, hashes and the receipt stay.
    purged_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # When the identifiers of its H2 data were recorded (gateway/onward.py); done on
    # first need, off the receive path. Not indexed: rows to record are found by
    # h2_keys_version below.
    h2_indexed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The match-key version (schemas/names.py KEY_NUMBER) they were recorded with; 0:
    # to be recorded. A process of an older version records its keys without saying so,
    # so what it recorded is recorded again by this one; a migration that changes the
    # keys sets every row back to 0.
    h2_keys_version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # "corrected" or "withdrawn" by the sender's correction/1 ``state_by``; for a
    # correction also "outdated" (a later one of the same message was applied).
    state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    state_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # Of a correction: its body's corrected_at, which orders the corrections of a
    # message (gateway/corrections.py); kept when retention purges the body.
    corrected_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    @property
    def held(self) -> bool:
        return self.quarantined_at is not None and self.released_at is None


class InboundRoute(Base):
    """A local agency a received message was routed to, and the rule that chose it
    (gateway/routing.py). Decided once, when the message is accepted."""

    __tablename__ = "inbound_routes"
    __table_args__ = (UniqueConstraint("inbound_id", "agency", name="uq_inbound_route"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inbound_id: Mapped[int] = mapped_column(ForeignKey("inbound_messages.id"), index=True)
    agency: Mapped[str] = mapped_column(String(64), index=True)
    rule: Mapped[str] = mapped_column(String(64))


class EarlyCorrection(Base):
    """A ``correction/1`` that arrived before the message it refers to (the original's
    delivery was still being retried when the correction's got through). It is
    applied when the original arrives (gateway/corrections.py), then removed."""

    __tablename__ = "early_corrections"
    __table_args__ = (Index("ix_early_corrections_original", "sender", "refers_to"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sender: Mapped[str] = mapped_column(String(20))
    refers_to: Mapped[str] = mapped_column(String(36))
    # Kept here too, so that a correction whose own body was purged meanwhile still
    # withdraws (or erases) the original when it arrives.
    refers_to_type: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(16))
    correction_id: Mapped[int] = mapped_column(ForeignKey("inbound_messages.id"))


class H2Identifier(Base):
    """A hashed identifier (name match key, document, phone, account) found in a
    received H2 message: data its originator must allow before it goes to a third
    state (gateway/onward.py). Removed with the message's payload."""

    __tablename__ = "h2_identifiers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inbound_id: Mapped[int] = mapped_column(ForeignKey("inbound_messages.id"), index=True)
    originator: Mapped[str] = mapped_column(String(20))
    key: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)


class InboundRejection(Base):
    """A refused envelope, kept with its code (the sender fields are as claimed)."""

    __tablename__ = "inbound_rejections"
    # The refusals of one envelope, whose kept bytes go when it is withdrawn or purged.
    __table_args__ = (Index("ix_inbound_rejections_envelope", "sender", "envelope_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[int] = mapped_column(BigInteger, index=True)
    code: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text)
    sender: Mapped[str | None] = mapped_column(String(20), nullable=True)
    envelope_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    authenticated: Mapped[bool] = mapped_column(Boolean, default=False)
    size: Mapped[int] = mapped_column(Integer)
    wire: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    receipt: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class TrustListVersion(Base):
    """Every trust list version this node verified and installed (PROTOCOL §5)."""

    __tablename__ = "trust_lists"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    wire: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    installed_at: Mapped[int] = mapped_column(BigInteger)


class TrustHint(Base):
    """A peer announced (``tl`` in an envelope) a trust list version newer than ours.

    The web workers only note it; the dispatcher process fetches and verifies the
    newer versions (gateway/trust_sync.py), so a request never waits on another node.
    """

    __tablename__ = "trust_hints"

    peer: Mapped[str] = mapped_column(String(20), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[int] = mapped_column(BigInteger)
    attempted_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class Suspension(Base):
    """A local decision to stop exchanging with a federation member, or a message
    type, although the trust list allows it (a state's own sovereignty). Kept after
    it is lifted, with who decided what and why."""

    __tablename__ = "suspensions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(8))  # "node" or "type"
    value: Mapped[str] = mapped_column(String(40), index=True)
    reason: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[int] = mapped_column(BigInteger)
    lifted_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    lifted_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lift_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class AuditEntry(Base):
    """One entry of the node's append-only audit log (PROTOCOL §6). ``seq`` is the
    entry's position in the Merkle tree (1-based); ``entry`` the exact xb1-json bytes
    hashed into it. Entries hold metadata and hashes, never message contents."""

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    entry: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(Base):
    """A signed checkpoint of the audit log: tree size, root, the signed note, and the
    compact range to resume appending from."""

    __tablename__ = "audit_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    frontier: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[int] = mapped_column(BigInteger)


class WitnessState(Base):
    """What this node last witnessed of a peer's audit log: the newest checkpoint it
    verified and co-signed, and the problem if the peer's log stopped being consistent
    with it (a fork or a rollback: an alarm until an operator looks into it)."""

    __tablename__ = "witness_state"

    peer: Mapped[str] = mapped_column(String(20), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    cosigned: Mapped[str] = mapped_column(Text)
    checked_at: Mapped[int] = mapped_column(BigInteger)
    problem: Mapped[str | None] = mapped_column(Text, nullable=True)
    problem_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # The peer signed larger checkpoints (the first: unproven_note; the largest, of
    # unproven_size entries: unproven_last_note) and has proven none consistent with
    # this state since unproven_since: an alarm once that lasts
    # (gateway.audit.witness.unproven_alarm_after).
    unproven_since: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    unproven_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    unproven_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    unproven_last_note: Mapped[str | None] = mapped_column(Text, nullable=True)


class AuditSubtree(Base):
    """The hash of one perfect, aligned subtree of the audit log's Merkle tree: MTH of
    the 2**level entries from position ``idx * 2**level + 1``. Checkpoints store every
    such subtree of level ``gateway.audit.log.SUBTREE_LEVEL`` and above, so a proof
    reads O(log n) of them instead of every leaf hash."""

    __tablename__ = "audit_subtrees"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))
