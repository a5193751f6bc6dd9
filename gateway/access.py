"""Local access control: who may do what on this node. Deny by default.

A token is either an **agency system** token (role ``agency``: an agency's own
system, through an adapter), an **administration** token (``admin``,
``observer``), or belongs to a **person** with one of the roles below. What a
role may submit and read is listed here and nowhere else; anything not listed is
refused with ``not-permitted``. On top of this, an agency reads only what was
routed to it (``gateway/routing.py``), minimised for its agency type. Of its
agency's outbound messages, a person sees the types their role may submit or
read (:func:`outbound_visible`).

==================  ==============================================  ==========================
role                may submit                                      may read when routed
==================  ==============================================  ==========================
officer             alert, hit-query, correction                    alert, hit-query,
                                                                    hit-answer, correction
prosecutor          case-request, case-response, hit-query,         case-request,
                    correction, grant                               case-response, alert,
                                                                    hit-answer, correction
central-authority   every type                                      every type
caseworker          referral, correction                            referral, correction
(officers, prosecutors and caseworkers also read grants routed to them)
dpo                 nothing (the oversight report, audit views)     nothing
admin               nothing (the admin API)                         nothing
agency (system)     every type                                      every type
==================  ==============================================  ==========================
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.errors import ApiError

ALL = frozenset({"*"})

#: Roles of people (users) of a node.
PERSON_ROLES = ("officer", "prosecutor", "central-authority", "caseworker", "dpo", "admin")
#: Roles that use the agency API (submit, read the inbox).
AGENCY_API_ROLES = ("agency", "officer", "prosecutor", "central-authority", "caseworker")
#: Roles that use the admin API; only ``admin`` may change anything.
ADMIN_API_ROLES = ("admin", "observer", "dpo")

SUBMIT: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "agency": ALL,
        "central-authority": ALL,
        "officer": frozenset({"alert/1", "hit-query/1", "correction/1"}),
        "prosecutor": frozenset(
            {"case-request/1", "case-response/1", "hit-query/1", "correction/1", "grant/1"}
        ),
        "caseworker": frozenset({"referral/1", "correction/1"}),
    }
)
READ: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "agency": ALL,
        "central-authority": ALL,
        "officer": frozenset({"alert/1", "hit-query/1", "hit-answer/1", "correction/1", "grant/1"}),
        "prosecutor": frozenset(
            {
                "case-request/1",
                "case-response/1",
                "alert/1",
                "hit-answer/1",
                "correction/1",
                "grant/1",
            }
        ),
        "caseworker": frozenset({"referral/1", "correction/1", "grant/1"}),
    }
)


def may(table: Mapping[str, frozenset[str]], role: str, typ: str) -> bool:
    allowed = table.get(role, frozenset())
    return allowed is ALL or typ in allowed


def readable(role: str) -> frozenset[str] | None:
    """Types ``role`` may read (None: every type)."""
    allowed = READ.get(role, frozenset())
    return None if allowed is ALL else allowed


def outbound_visible(role: str) -> frozenset[str] | None:
    """Types of its agency's outbound messages ``role`` may see (None: every type):
    what it may submit or read. An officer does not see the agency's case requests,
    nor their corrections (``outbox.visible``: a correction counts as the type it
    corrects too)."""
    submit, read = SUBMIT.get(role, frozenset()), READ.get(role, frozenset())
    return None if ALL in (submit, read) else submit | read


def require_submit(role: str, typ: object) -> None:
    if isinstance(typ, str) and not may(SUBMIT, role, typ):
        raise ApiError(
            "not-permitted",
            f"role {role} may not send {typ}; it may send "
            f"{', '.join(sorted(SUBMIT.get(role, ()))) or 'nothing'}",
            status=403,
        )
