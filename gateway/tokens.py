"""Per-agency API tokens. The secret is shown once at issue; only its SHA-256 is stored.

Tokens are 32 random bytes, so a plain SHA-256 (not a slow password hash) is
enough: there is nothing to guess offline.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.access import PERSON_ROLES
from gateway.audit import log as audit
from gateway.errors import ApiError
from gateway.models import ApiToken, User, is_row_id
from schemas.common import FORBIDDEN_SINGLE_LINE

TOKEN_PREFIX = "gwt_"  # noqa: S105 (a prefix, not a secret)
AGENCY_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}\Z")


@dataclass(frozen=True)
class IssuedToken:
    id: int
    agency: str
    secret: str


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


#: Roles of tokens that belong to no person: an agency's system, administration.
SYSTEM_ROLES = ("agency", "admin", "observer")
ROLES = SYSTEM_ROLES + tuple(r for r in PERSON_ROLES if r not in SYSTEM_ROLES)


def issue(
    session: Session,
    agency: str,
    label: str = "",
    role: str = "agency",
    user: User | None = None,
    *,
    by: str | None = None,
) -> IssuedToken:
    """Issue a token for ``agency`` (for the admin and observer roles: the holder), or,
    with ``user``, for that person: the token takes the person's agency and role.
    ``by`` (who asked: a name and the calling token, or the command line) is recorded."""
    if user is not None:
        if user.disabled_at is not None:
            raise ApiError("user-disabled", f"user {user.name} is disabled", status=409)
        agency, role = user.agency, user.role
    elif role not in ROLES:
        raise ApiError("bad-role", f"role must be one of {', '.join(ROLES)}", status=422)
    elif role not in SYSTEM_ROLES:
        raise ApiError(
            "bad-role",
            f"a token of role {role} belongs to a person: add the user with "
            "'gateway user add' and issue it with --user",
            status=422,
        )
    if not AGENCY_RE.match(agency):
        raise ApiError(
            "bad-agency",
            "agency names are lowercase letters, digits and dashes, e.g. kz-police",
            status=422,
        )
    if len(label) > 200 or FORBIDDEN_SINGLE_LINE.search(label):
        raise ApiError(
            "bad-label",
            "a label is up to 200 characters on one line, without control characters, "
            "bidirectional overrides or bytes that are not text",
            status=422,
        )
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        role=role,
        agency=agency,
        label=label,
        token_hash=_hash(secret),
        prefix=secret[:10],
        created_at=int(time.time()),
        user_id=user.id if user is not None else None,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        "token-issued",
        at=row.created_at,
        token=row.id,
        role=role,
        holder=agency,
        user=user.name if user is not None else None,
        by=by,
    )
    return IssuedToken(row.id, agency, secret)


def authenticate(
    session: Session, header: str | None, roles: tuple[str, ...] = ("agency",)
) -> ApiToken:
    """Resolve an ``Authorization: Bearer`` header to a live token of one of ``roles``,
    or refuse (deny by default: an agency token opens no admin call and an admin
    token no agency call)."""
    # The scheme's name is case-insensitive (RFC 9110 §11.1).
    scheme, _, secret = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        raise ApiError(
            "unauthenticated",
            "send an agency API token as 'Authorization: Bearer "
            "<token>'; an operator issues one with 'gateway token issue'",
            status=401,
        )
    secret = secret.strip()
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == _hash(secret))).first()
    if row is None or row.revoked_at is not None:
        raise ApiError(
            "bad-token",
            "this API token is unknown or revoked; ask the node operator for a new one",
            status=401,
        )
    if row.user_id is not None:
        person = session.get(User, row.user_id)
        if person is None or person.disabled_at is not None:
            raise ApiError(
                "bad-token",
                "the person this token belongs to is disabled; ask the node's administrators",
                status=401,
            )
    if row.role not in roles:
        raise ApiError(
            "wrong-role",
            f"this call needs a token of role {' or '.join(roles)}; this one is {row.role}",
            status=403,
        )
    now = int(time.time())
    if row.last_used_at is None or now - row.last_used_at >= 60:
        session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
    return row


def revoke(session: Session, token_id: int, *, by: str | None = None) -> tuple[ApiToken, bool]:
    """Revoke a token (once; again changes nothing); ``by``, who asked, is recorded. The
    token as now recorded, and whether this call revoked it."""
    row = session.get(ApiToken, token_id) if is_row_id(token_id) else None
    if row is None:
        raise ApiError("no-such-token", f"there is no token with id {token_id}", status=404)
    audit.lock(session)  # before the row changes (gateway/audit/log.py)
    at = int(time.time())
    # Conditional, so that of two revocations at the same time one is recorded.
    revoked = session.execute(
        update(ApiToken)
        .where(ApiToken.id == row.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=at)
        .execution_options(synchronize_session=False)
    )
    if revoked.rowcount == 1:  # type: ignore[attr-defined]
        audit.record(session, "token-revoked", at=at, token=row.id, holder=row.agency, by=by)
    session.refresh(row)
    return row, revoked.rowcount == 1  # type: ignore[attr-defined]


def listing(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))
