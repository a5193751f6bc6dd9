"""The people who use a node: each has one role at one agency (``gateway/access.py``).

Adding and disabling a user are admin actions recorded in the audit log with who
did it and why. Users are never deleted; a disabled user's tokens stop working at
once. A person's token carries the role the person had when it was issued: to
change a role, disable the user and add the person again under a new name.
"""

from __future__ import annotations

import re
import time

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.access import PERSON_ROLES
from gateway.audit import log as audit
from gateway.errors import ApiError
from gateway.models import User
from gateway.sovereignty import require_reason_and_name
from gateway.tokens import AGENCY_RE
from schemas.common import FORBIDDEN_SINGLE_LINE

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}\Z")


def add(session: Session, name: str, *, full_name: str, agency: str, role: str, by: str) -> User:
    if not NAME_RE.match(name):
        raise ApiError(
            "bad-user",
            "a user name is 2-64 lowercase letters, digits, '.', '_' or '-', e.g. a.seitkali",
            status=422,
        )
    if role not in PERSON_ROLES:
        raise ApiError("bad-role", f"role must be one of {', '.join(PERSON_ROLES)}", status=422)
    if not AGENCY_RE.match(agency):
        raise ApiError(
            "bad-agency", "agency names are lowercase letters, digits and dashes", status=422
        )
    if not full_name.strip() or len(full_name) > 200 or FORBIDDEN_SINGLE_LINE.search(full_name):
        raise ApiError(
            "bad-user",
            "give the person's full name (1-200 characters on one line, without control "
            "characters, bidirectional overrides or bytes that are not text)",
            status=422,
        )
    require_reason_and_name("user added", by)
    now = int(time.time())
    user = User(
        name=name,
        full_name=full_name.strip(),
        agency=agency,
        role=role,
        created_at=now,
        created_by=by,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as e:
        session.rollback()
        raise ApiError("user-exists", f"there is already a user {name}", status=409) from e
    audit.record(session, "user-added", at=now, user=name, agency=agency, role=role, by=by)
    return user


def get(session: Session, name: str) -> User:
    user = session.scalars(select(User).where(User.name == name)).first()
    if user is None:
        raise ApiError("no-such-user", f"there is no user {name}", status=404)
    return user


def disable(session: Session, name: str, *, reason: str, by: str) -> tuple[User, bool]:
    """Disable a person (once: disabling again keeps the first decision); the person
    as now recorded, and whether this call disabled them."""
    require_reason_and_name(reason, by)
    get(session, name)
    audit.lock(session)  # before the row changes (gateway/audit/log.py)
    at = int(time.time())
    # Conditional, so that of two at the same time one disables and records it.
    disabled = session.execute(
        update(User)
        .where(User.name == name, User.disabled_at.is_(None))
        .values(disabled_at=at, disabled_by=by, disabled_reason=reason)
        .execution_options(synchronize_session=False)
    )
    if disabled.rowcount == 1:  # type: ignore[attr-defined]
        audit.record(session, "user-disabled", at=at, user=name, by=by, reason=reason)
    user = session.scalars(
        select(User).where(User.name == name).execution_options(populate_existing=True)
    ).one()
    return user, disabled.rowcount == 1  # type: ignore[attr-defined]


def listing(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))
