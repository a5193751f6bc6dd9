"""The data protection officer's report, read from the audit log and the stores.

For a period it answers the questions of EU Directive 2016/680 art. 25 and of a
national oversight body:

* **consultations**: who (agency, token) read which received messages, when and
  with what justification;
* **disclosures**: who sent which message, of which type, to which states, for
  which purpose, on which legal basis and under which handling code;
* **unusual access**: reads outside office hours (``timezone``, ``office_hours``,
  ``office_days``), bulk reads (more than ``bulk_read_limit`` messages by one
  agency within an hour), many hit/no-hit queries (more than ``hit_query_limit``
  by one agency in a local day), and reads without a justification;
* **overdue requests**: case-data requests, received or sent, whose deadline has
  passed without a response that completes or refuses them;
* **waiting corrections**: corrections and withdrawals received before the message
  they refer to, still waiting for it; one waiting longer than any envelope may
  live (``max_ttl`` and ``clock_skew`` after it was sealed) is ``stale``: its
  original can no longer arrive under that id, so it never arrived here, or
  arrived under another envelope id (sealed again by its sender, docs/policy.md),
  and then what the sender corrected or withdrew is still here as it was first sent;
* **due for purge**: stored message bodies whose retention (the body's
  ``retention_days`` capped by the policy for its type) ends within
  ``purge_notice_days`` days, or has already ended (``gateway purge``); and how
  many refused envelopes are kept byte for byte, how many of those are due and
  how many are past the policy's ``[retention] refused``.

Everything but the purge list comes from audit entries, which hold metadata and
never message contents; the report itself is recorded in the audit log, so the
overseers' own reading is on the record too.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from time import time as unix_time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway import purge
from gateway.audit import log as audit
from gateway.config import Settings
from gateway.corrections import NOT_DISMISSED
from gateway.errors import ApiError
from gateway.models import (
    AuditEntry,
    EarlyCorrection,
    InboundMessage,
    InboundRejection,
    OutboundMessage,
)
from gateway.policy import Policy
from schemas import xb1json

DAY = 86_400
HOUR = 3_600
_KINDS = ("inbox-read", "message-submitted")


DEFAULT_DAYS = 30
_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def period(settings: Settings, since: str | None, until: str | None, now: int) -> tuple[int, int]:
    """``[since, until)`` in seconds from local dates ``YYYY-MM-DD`` (both days included);
    by default the last 30 days up to and including the current second."""
    zone = settings.zone()

    def parse(text: str, name: str) -> date:
        try:
            # YYYY-MM-DD only: fromisoformat also reads 20261101 and week dates (2026-W44).
            if not _DAY_RE.fullmatch(text):
                raise ValueError(text)
            day = date.fromisoformat(text)
        except ValueError as e:
            raise ApiError(
                "bad-period", f"{name} must be a date such as 2026-11-01", status=422
            ) from e
        if not 1970 <= day.year <= 9998:
            raise ApiError("bad-period", f"{name} must be a date between 1970 and 9998", status=422)
        return day

    if until is None:
        end = now + 1
        default_start = end - DEFAULT_DAYS * DAY
    else:
        after = parse(until, "until") + timedelta(days=1)
        end = _start_of(after, zone)
        # 30 local days: a day of a change of summer time is 23 or 25 hours long.
        default_start = _start_of(after - timedelta(days=DEFAULT_DAYS), zone)
    start = default_start if since is None else _start_of(parse(since, "since"), zone)
    if start >= end:
        raise ApiError("bad-period", "since must be before until", status=422)
    return start, end


def _start_of(day: date, zone: Any) -> int:
    return int(datetime.combine(day, time(0), zone).timestamp())


def _entries(session: Session, since: int, until: int) -> Iterator[dict[str, Any]]:
    # Streamed in batches: a long period on a busy node is many entries.
    rows = audit.stream(
        session,
        select(AuditEntry.seq, AuditEntry.entry)
        .where(AuditEntry.kind.in_(_KINDS), AuditEntry.at >= since, AuditEntry.at < until)
        .order_by(AuditEntry.seq),
    )
    for seq, raw in rows:
        entry = xb1json.loads(raw)
        entry["seq"] = seq
        yield entry


def _consultation(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": entry["seq"],
        "at": entry["at"],
        "agency": entry.get("agency"),
        "token": entry.get("token"),
        "user": entry.get("user"),
        "messages": entry.get("messages", []),
        "justification": entry.get("justification"),
    }


def _disclosure(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": entry["seq"],
        "at": entry["at"],
        "agency": entry.get("agency"),
        "message": entry.get("id"),
        "typ": entry.get("typ"),
        "to": entry.get("to", []),
        "purpose": entry.get("purpose"),
        "legal_basis": entry.get("basis"),
        "handling": entry.get("handling"),
    }


def _off_hours(reads: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    zone = settings.zone()
    hours, days = settings.office()
    flags = []
    for read in reads:
        local = datetime.fromtimestamp(read["at"], zone)
        if local.hour not in hours or local.isoweekday() not in days:
            flags.append(
                {
                    "flag": "off-hours",
                    "agency": read["agency"],
                    "at": read["at"],
                    "local_time": local.isoformat(timespec="minutes"),
                    "messages": len(read["messages"]),
                    "seq": [read["seq"]],
                    "detail": f"read {len(read['messages'])} message(s) at "
                    f"{local:%A %H:%M} {settings.timezone}, outside office hours "
                    f"{settings.office_hours} on days {settings.office_days}",
                }
            )
    return flags


def _bulk_reads(reads: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Windows of at most an hour in which one agency read more than ``limit`` messages;
    each read belongs to at most one flagged window."""
    by_agency: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for read in reads:
        by_agency[read["agency"]].append(read)
    flags = []
    for agency, unsorted in sorted(by_agency.items(), key=lambda kv: str(kv[0])):
        items = sorted(unsorted, key=lambda read: (read["at"], read["seq"]))
        start, total = 0, 0
        for end, read in enumerate(items):
            total += len(read["messages"])
            while read["at"] - items[start]["at"] >= HOUR:
                total -= len(items[start]["messages"])
                start += 1
            if total > limit:
                window = items[start : end + 1]
                flags.append(
                    {
                        "flag": "bulk-read",
                        "agency": agency,
                        "at": window[0]["at"],
                        "messages": total,
                        "seq": [r["seq"] for r in window],
                        "detail": f"{agency} read {total} messages within an hour "
                        f"(more than {limit})",
                    }
                )
                start, total = end + 1, 0
    return flags


def _hit_queries(disclosures: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    zone = settings.zone()
    counts: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for sent in disclosures:
        if str(sent["typ"]).startswith("hit-query/"):
            day = datetime.fromtimestamp(sent["at"], zone).date().isoformat()
            counts[(str(sent["agency"]), day)].append(sent)
    return [
        {
            "flag": "many-hit-queries",
            "agency": agency,
            "at": items[0]["at"],
            "messages": len(items),
            "seq": [item["seq"] for item in items],
            "detail": f"{agency} sent {len(items)} hit/no-hit queries on {day} "
            f"(more than {settings.hit_query_limit})",
        }
        for (agency, day), items in sorted(counts.items())
        if len(items) > settings.hit_query_limit
    ]


def _unjustified(reads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "flag": "no-justification",
            "agency": read["agency"],
            "at": read["at"],
            "messages": len(read["messages"]),
            "seq": [read["seq"]],
            "detail": "read without a recorded justification",
        }
        for read in reads
        if not read["justification"]
    ]


def due_for_purge(
    session: Session, policy: Policy, now: int, within_days: int
) -> list[dict[str, Any]]:
    """Stored bodies whose retention ends before ``now + within_days``, soonest first."""
    horizon = now + within_days * DAY
    due = [
        {
            "direction": direction,
            "message": message_id,
            "holder": holder,
            "typ": typ,
            "retention_ends": ends,
            "overdue": ends <= now,
        }
        for direction, message_id, typ, ends, holder, _ in purge.stored(session, policy)
        if ends <= horizon
    ]
    return sorted(due, key=lambda item: (item["retention_ends"], item["message"]))


def refused_bytes(session: Session, policy: Policy, now: int, within_days: int) -> dict[str, int]:
    """Refused envelopes kept byte for byte: how many, how many of them are due for
    purge within ``within_days`` and how many are past ``[retention] refused``."""

    def count(where: Any) -> int:
        found = session.scalar(select(func.count()).select_from(InboundRejection).where(where))
        return int(found or 0)

    return {
        "retention_days": policy.refused_retention_days(),
        "kept": count(InboundRejection.wire.is_not(None)),
        "due": count(purge.refused_due_by(policy, now + within_days * DAY)),
        "overdue": count(purge.refused_due_by(policy, now)),
    }


FINAL_OUTCOMES = ("complete", "refused")


def _bodies(session: Session, model: Any, typ: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The bodies of ``typ`` still stored, as they stand now: a receiving node replaced
    a corrected message's body with the corrected one; a sending node keeps what it
    sent, and the body of the correction that replaced it is taken instead. (A
    withdrawn message's body is erased on both.)"""
    key = model.envelope_id if model is InboundMessage else model.id
    for message_id, body_json, state, state_by in session.execute(
        select(key, model.body_json, model.state, model.state_by).where(
            model.typ == typ, model.body_json.is_not(None)
        )
    ):
        if model is OutboundMessage:
            body = purge.sent_body_now(session, body_json, state, state_by)
        else:
            body = json.loads(body_json)
        if isinstance(body, dict) and body:
            yield message_id, body


def _purged_answers(session: Session, direction: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The request and outcome of each case-response of ``direction`` ("sent": this
    node's answers, "received": the answers it got) purged since (its ``purged`` entry
    keeps them; gateway/purge.py), oldest first."""
    for raw in session.scalars(
        select(AuditEntry.entry).where(AuditEntry.kind == "purged").order_by(AuditEntry.seq)
    ):
        entry = xb1json.loads(raw)
        if entry.get("direction") == direction and "in_reply_to" in entry:
            yield str(entry.get("id")), entry


def overdue_requests(session: Session, now: int) -> list[dict[str, Any]]:
    """Case-data requests past their deadline that no response completed or refused:
    received ones this node must answer, and sent ones it waits for."""
    found = []
    for direction, requests, responses in (
        ("received", InboundMessage, OutboundMessage),
        ("sent", OutboundMessage, InboundMessage),
    ):
        answers: dict[str, list[str]] = defaultdict(list)
        answered = "sent" if direction == "received" else "received"
        for _, body in _purged_answers(session, answered):
            answers[str(body.get("in_reply_to"))].append(str(body.get("outcome")))
        for _, body in _bodies(session, responses, "case-response/1"):
            answers[str(body.get("in_reply_to"))].append(str(body.get("outcome")))
        for message_id, body in _bodies(session, requests, "case-request/1"):
            deadline = body.get("deadline")
            outcomes = answers.get(message_id, [])
            if (
                isinstance(deadline, int)
                and deadline < now
                and not (set(outcomes) & set(FINAL_OUTCOMES))
            ):
                found.append(
                    {
                        "direction": direction,
                        "message": message_id,
                        "deadline": deadline,
                        "urgency": body.get("urgency"),
                        "last_outcome": outcomes[-1] if outcomes else None,
                    }
                )
    return sorted(found, key=lambda item: (item["deadline"], item["message"]))


def waiting_corrections(session: Session, settings: Settings, now: int) -> list[dict[str, Any]]:
    """Corrections and withdrawals still waiting for their original, oldest first;
    ``held`` while held in quarantine (they count once released, whether or not their
    original has come); otherwise ``stale`` once their original can no longer arrive
    under the id they name (``gateway inbox dismiss-correction`` ends the wait)."""
    horizon = settings.max_ttl + settings.clock_skew
    rows = session.execute(
        select(
            EarlyCorrection.sender,
            EarlyCorrection.refers_to,
            EarlyCorrection.refers_to_type,
            EarlyCorrection.action,
            InboundMessage.id,
            InboundMessage.envelope_id,
            InboundMessage.iat,
            InboundMessage.received_at,
            InboundMessage.quarantined_at,
            InboundMessage.released_at,
        )
        .join(InboundMessage, InboundMessage.id == EarlyCorrection.correction_id)
        .where(NOT_DISMISSED)
        .order_by(InboundMessage.received_at, EarlyCorrection.id)
    )
    found = []
    for row in rows:
        held = row.quarantined_at is not None and row.released_at is None
        found.append(
            {
                "sender": row.sender,
                "correction": row.envelope_id,
                "inbound": row.id,  # its inbox id, as 'gateway inbox dismiss-correction' takes
                "action": row.action,
                "refers_to": row.refers_to,
                "refers_to_type": row.refers_to_type,
                "received_at": row.received_at,
                "held": held,
                # The original was sealed before its correction, and no envelope is
                # accepted after its exp, at most max_ttl (and the skew) after sealing.
                "stale": not held and row.iat + horizon < now,
            }
        )
    return found


def report_for(node: Any, since: str | None, until: str | None, *, by: str) -> dict[str, Any]:
    """The report of ``node`` for the local dates ``since``..``until`` (see
    :func:`period`), recorded as produced by ``by`` and committed."""
    now = int(unix_time())
    with node.sessions() as session:
        start, end = period(node.settings, since, until, now)
        result = report(
            session, node.settings, node.policy(), since=start, until=end, now=now, by=by
        )
        session.commit()
    return result


def report(
    session: Session,
    settings: Settings,
    policy: Policy,
    *,
    since: int,
    until: int,
    now: int,
    by: str,
) -> dict[str, Any]:
    """The report for ``[since, until)``; records that ``by`` produced it. The caller
    commits (the audit entry is part of the caller's transaction)."""
    reads: list[dict[str, Any]] = []
    disclosures: list[dict[str, Any]] = []
    for entry in _entries(session, since, until):
        if entry["kind"] == "inbox-read":
            reads.append(_consultation(entry))
        else:
            disclosures.append(_disclosure(entry))
    unusual = (
        _bulk_reads(reads, settings.bulk_read_limit)
        + _off_hours(reads, settings)
        + _hit_queries(disclosures, settings)
        + _unjustified(reads)
    )
    unusual.sort(key=lambda flag: (flag["at"], flag["flag"]))
    result = {
        "node": settings.node,
        "since": since,
        "until": until,
        "generated_at": now,
        "timezone": settings.timezone,
        "consultations": reads,
        "disclosures": disclosures,
        "unusual": unusual,
        "overdue_requests": overdue_requests(session, now),
        "waiting_corrections": waiting_corrections(session, settings, now),
        "due_for_purge": due_for_purge(session, policy, now, settings.purge_notice_days),
        "refused_bytes": refused_bytes(session, policy, now, settings.purge_notice_days),
    }
    audit.record(
        session,
        "oversight-report",
        at=now,
        by=by,
        since=since,
        until=until,
        flags=len(unusual),
    )
    return result


def render(result: dict[str, Any], settings: Settings) -> str:
    """The report as text for a terminal or a printout."""
    zone = settings.zone()

    def when(at: int) -> str:
        return datetime.fromtimestamp(at, zone).strftime("%Y-%m-%d %H:%M")

    lines = [
        f"Data protection report of node {result['node']}, "
        f"{when(result['since'])} to {when(result['until'])} ({result['timezone']})",
        "",
        f"Consultations ({len(result['consultations'])}):",
    ]
    for read in result["consultations"]:
        lines.append(
            f"  {when(read['at'])}  {read['agency']} "
            f"({read['user'] or 'token ' + str(read['token'])}) read "
            f"{len(read['messages'])} message(s): {read['justification'] or 'NO JUSTIFICATION'}"
        )
    lines += ["", f"Disclosures ({len(result['disclosures'])}):"]
    for sent in result["disclosures"]:
        lines.append(
            f"  {when(sent['at'])}  {sent['agency']} sent {sent['typ']} {sent['message']} "
            f"to {', '.join(sent['to'])}: purpose {sent['purpose']}, basis "
            f"{sent['legal_basis']}, handling {sent['handling']}"
        )
    lines += ["", f"Unusual access ({len(result['unusual'])}):"]
    for flag in result["unusual"]:
        lines.append(f"  {when(flag['at'])}  [{flag['flag']}] {flag['detail']}")
    lines += ["", f"Overdue case-data requests ({len(result['overdue_requests'])}):"]
    for item in result["overdue_requests"]:
        waiting = "this node must answer" if item["direction"] == "received" else "awaiting"
        lines.append(
            f"  deadline {when(item['deadline'])}  {item['direction']} {item['message']} "
            f"({item['urgency']}; {waiting}; last outcome {item['last_outcome'] or 'none'})"
        )
    lines += ["", f"Corrections waiting for their original ({len(result['waiting_corrections'])}):"]
    for item in result["waiting_corrections"]:
        if item.get("held"):
            state = "held in quarantine ('gateway inbox quarantined')"
        elif item["stale"]:
            state = (
                "STALE: the original cannot arrive under this id any more; ask the sender "
                "which envelope id it reached this node under, act on that message, then "
                "'gateway inbox dismiss-correction'"
            )
        else:
            state = "waiting"
        lines.append(
            f"  {when(item['received_at'])}  {item['sender']} {item['action']} "
            f"{item['correction']} (inbox {item.get('inbound')}) of {item['refers_to_type']} "
            f"{item['refers_to']}: {state}"
        )
    lines += ["", f"Due for purge ({len(result['due_for_purge'])}):"]
    for item in result["due_for_purge"]:
        state = "OVERDUE" if item["overdue"] else "due"
        lines.append(
            f"  {state} {when(item['retention_ends'])}  {item['direction']} {item['typ']} "
            f"{item['message']}"
        )
    refused = result["refused_bytes"]
    lines.append(
        f"  refused envelopes kept byte for byte: {refused['kept']} (for "
        f"{refused['retention_days']} days), {refused['due']} due"
        + (f", {refused['overdue']} OVERDUE" if refused["overdue"] else "")
    )
    return "\n".join(lines)
