"""Consultations need a justification; the data protection officer's report lists who
consulted and disclosed what and why, flags unusual access, and lists what is due for
purge — and asking for the report is itself recorded."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from gateway import purge
from gateway.audit import log as audit
from gateway.audit import oversight
from gateway.cli import main
from gateway.dispatcher import Dispatcher
from gateway.errors import ApiError
from gateway.inbox import receive
from gateway.models import AuditEntry, InboundRejection, OutboundMessage
from gateway.tokens import issue
from schemas import xb1json
from schemas.examples import example_alert, example_case_request, example_case_response
from tests.test_trust_follow import submit

TASHKENT = ZoneInfo("Asia/Tashkent")  # UTC+5 all year


def local(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=TASHKENT).timestamp())


def entries(member, kind):
    with member.node.sessions() as session:
        return [
            xb1json.loads(raw)
            for raw in session.scalars(select(AuditEntry.entry).where(AuditEntry.kind == kind))
        ]


@pytest.fixture
def exchanged(make_federation):
    fed = make_federation(("KZ", "KG"))
    message_id = submit(fed["KZ"], ["KG"])
    [outcome] = Dispatcher(fed["KZ"].node).run_once()
    assert outcome.state == "delivered"
    return fed, message_id


def test_reading_received_messages_needs_a_justification(exchanged):
    fed, message_id = exchanged
    kg = fed["KG"]
    bare = {"Authorization": kg.auth()["Authorization"]}
    for path in ("/api/v1/inbox", "/api/v1/inbox/1"):
        answer = kg.client().get(path, headers=bare)
        assert (answer.status_code, answer.get_json()["error"]) == (400, "justification-required")
        for bad in ("x", "a" * 501, "tab\there"):
            answer = kg.client().get(path, headers={**bare, "X-Justification": bad})
            assert answer.get_json()["error"] == "bad-justification", bad
    assert entries(kg, "inbox-read") == []  # refused reads read nothing

    why = "case KG-2026-118: identify the victim"
    answer = kg.client().get("/api/v1/inbox", headers={**bare, "X-Justification": why})
    assert answer.status_code == 200 and answer.get_json()["messages"]
    [read] = entries(kg, "inbox-read")
    # Which message: its sender's too, as ids are unique per sender only.
    assert read["justification"] == why and read["messages"] == [["KZ", message_id]]
    assert read["agency"] == kg.agency and isinstance(read["token"], int)


def test_report_lists_consultations_and_disclosures_with_their_reasons(exchanged):
    fed, message_id = exchanged
    kz, kg = fed["KZ"], fed["KG"]
    kg.client().get("/api/v1/inbox", headers=kg.auth())
    with kz.node.sessions() as session:
        sent = oversight.report(
            session, kz.node.settings, kz.node.policy(), since=0, until=2**40, now=10, by="test"
        )["disclosures"]
    body = example_alert()
    assert sent == [
        {
            "seq": sent[0]["seq"],
            "at": sent[0]["at"],
            "agency": kz.agency,
            "message": message_id,
            "typ": "alert/1",
            "to": ["KG"],
            "purpose": body["purpose"],
            "legal_basis": body["legal_basis"]["instrument"],
            "handling": body["handling"]["code"],
        }
    ]
    with kg.node.sessions() as session:
        result = oversight.report(
            session, kg.node.settings, kg.node.policy(), since=0, until=2**40, now=10, by="test"
        )
        session.commit()
    [read] = result["consultations"]
    assert (read["agency"], read["messages"], read["justification"]) == (
        kg.agency,
        [["KZ", message_id]],
        "test case 1",
    )
    assert entries(kg, "oversight-report")[0]["by"] == "test"


def record_read(member, at, count, justification="case 7", agency="kg-police"):
    with member.node.sessions() as session:
        audit.record(
            session,
            "inbox-read",
            at=at,
            agency=agency,
            token=1,
            justification=justification,
            messages=[f"m{i}" for i in range(count)],
        )
        session.commit()


def flags_of(member, **changes):
    settings = dataclasses.replace(member.node.settings, timezone="Asia/Tashkent", **changes)
    with member.node.sessions() as session:
        result = oversight.report(
            session,
            settings,
            member.node.policy(),
            since=local("2026-11-01T00:00"),
            until=local("2026-12-01T00:00"),
            now=local("2026-11-30T12:00"),
            by="test",
        )
    return [(flag["flag"], flag["agency"], flag["messages"]) for flag in result["unusual"]]


def test_unusual_access_is_flagged_and_usual_access_is_not(make_federation):
    kg = make_federation(("KG",), serve=False)["KG"]
    record_read(kg, local("2026-11-25T10:00"), 3)  # Wednesday, office hours
    record_read(kg, local("2026-11-25T18:59"), 2)
    assert flags_of(kg) == []

    record_read(kg, local("2026-11-25T23:30"), 1)  # Wednesday night
    record_read(kg, local("2026-11-28T11:00"), 1)  # Saturday
    record_read(kg, local("2026-11-26T09:00"), 1, justification=None)
    assert flags_of(kg) == [
        ("off-hours", "kg-police", 1),
        ("no-justification", "kg-police", 1),
        ("off-hours", "kg-police", 1),
    ]
    # Within one hour: 3 messages at 10:00 are not more than 4; with 2 more at 10:30
    # (logged later, out of time order) there are 5, more than 4 but not than 5.
    assert not [f for f in flags_of(kg, bulk_read_limit=4) if f[0] == "bulk-read"]
    record_read(kg, local("2026-11-25T10:30"), 2)
    assert not [f for f in flags_of(kg, bulk_read_limit=5) if f[0] == "bulk-read"]
    assert ("bulk-read", "kg-police", 5) in flags_of(kg, bulk_read_limit=4)
    # Another agency's reads are counted on their own.
    record_read(kg, local("2026-11-25T10:40"), 4, agency="kg-ngo")
    assert ("bulk-read", "kg-ngo", 4) not in flags_of(kg, bulk_read_limit=4)


def test_many_hit_queries_in_a_day_are_flagged(make_federation):
    kz = make_federation(("KZ",), serve=False)["KZ"]
    with kz.node.sessions() as session:
        for i in range(4):
            audit.record(
                session,
                "message-submitted",
                at=local("2026-11-24T10:00") + i,
                agency="kz-police",
                id=f"q{i}",
                typ="hit-query/1",
                to=["UZ"],
            )
        session.commit()
    assert flags_of(kz, hit_query_limit=4) == []
    assert flags_of(kz, hit_query_limit=3) == [("many-hit-queries", "kz-police", 4)]


def test_due_for_purge_and_overdue(exchanged):
    fed, message_id = exchanged
    kz = fed["KZ"]
    with kz.node.sessions() as session:
        created = session.get(OutboundMessage, message_id).created_at
        ends = created + example_alert()["retention_days"] * oversight.DAY
        assert (
            oversight.due_for_purge(session, kz.node.policy(), ends - 20 * oversight.DAY, 14) == []
        )
        [due] = oversight.due_for_purge(session, kz.node.policy(), ends - 3 * oversight.DAY, 14)
        assert (due["message"], due["retention_ends"], due["overdue"]) == (message_id, ends, False)
        [due] = oversight.due_for_purge(session, kz.node.policy(), ends, 0)
        assert due["overdue"] is True


def test_refused_envelopes_kept_and_due_for_purge(make_federation):
    kg = make_federation(("KG",), serve=False)["KG"]
    assert receive(kg.node, b"[1]").status == 400
    assert receive(kg.node, b"{}").status == 400
    with kg.node.sessions() as session:
        arrived = [r.received_at for r in session.scalars(select(InboundRejection))]
        ends = max(arrived) + 30 * oversight.DAY
        policy = kg.node.policy()

        def figures(now: int, within: int = 14) -> dict:
            return oversight.refused_bytes(session, policy, now, within)

        assert figures(ends - 20 * oversight.DAY) == {
            "retention_days": 30,
            "kept": 2,
            "due": 0,
            "overdue": 0,
        }
        assert figures(ends - 3 * oversight.DAY)["due"] == 2
        assert figures(ends, 0)["overdue"] == 2
        purge.run(session, policy, now=ends, by="test")
        assert figures(ends, 0) == {"retention_days": 30, "kept": 0, "due": 0, "overdue": 0}
    result = oversight.report_for(kg.node, None, None, by="test")
    assert result["refused_bytes"]["kept"] == 0
    # Bytes kept past their time (the purge has not run) make the command exit 3.
    assert receive(kg.node, b"[2]").status == 400
    with kg.node.sessions() as session:
        session.execute(
            update(InboundRejection).values(received_at=arrived[0] - 31 * oversight.DAY)
        )
        session.commit()
    args = ["--instance", str(kg.instance), "audit", "dpo", "--by", "A. DPO"]
    shown = CliRunner().invoke(main, args)
    assert shown.exit_code == 3, shown.output
    assert "refused envelopes kept byte for byte: 1 (for 30 days), 1 due, 1 OVERDUE" in shown.output
    assert "refused envelopes kept byte for byte: 0 (for 30 days), 0 due" in oversight.render(
        result, kg.node.settings
    )


def test_period_parsing():
    from gateway.config import Settings

    settings = Settings(node="UZ", instance="x", timezone="Asia/Tashkent").check()
    since, until = oversight.period(settings, "2026-11-01", "2026-11-30", 0)
    assert (since, until) == (local("2026-11-01T00:00"), local("2026-12-01T00:00"))
    now = 100 * oversight.DAY
    assert oversight.period(settings, None, None, now) == (now + 1 - 30 * oversight.DAY, now + 1)
    # --until alone: the 30 local days up to it, also across a change of summer time.
    berlin = Settings(node="DE", instance="x", timezone="Europe/Berlin").check()
    since, until = oversight.period(berlin, None, "2026-11-01", 0)
    start = datetime(2026, 10, 3, tzinfo=ZoneInfo("Europe/Berlin"))
    assert since == int(start.timestamp())
    assert until == int(datetime(2026, 11, 2, tzinfo=ZoneInfo("Europe/Berlin")).timestamp())
    for since, until in (
        ("2026-13-01", None),
        ("2026-11-30", "2026-11-01"),
        (None, "9999-12-31"),  # the day after it is no date
        ("9999-12-30", None),
        ("0001-01-01", None),
    ):
        with pytest.raises(ApiError) as raised:
            oversight.period(settings, since, until, 0)
        assert raised.value.code == "bad-period"


def test_report_through_the_admin_api_and_the_cli(exchanged):
    fed, _ = exchanged
    kg = fed["KG"]
    kg.client().get("/api/v1/inbox", headers=kg.auth())
    with kg.node.sessions() as session:
        secret = issue(session, "kg-dpo", "oversight", role="observer").secret
        session.commit()
    answer = kg.client().get(
        "/api/v1/admin/oversight", headers={"Authorization": f"Bearer {secret}"}
    )
    assert answer.status_code == 200
    assert len(answer.get_json()["consultations"]) == 1
    answer = kg.client().get(
        "/api/v1/admin/oversight?since=tomorrow", headers={"Authorization": f"Bearer {secret}"}
    )
    assert (answer.status_code, answer.get_json()["error"]) == (422, "bad-period")
    assert [e["by"] for e in entries(kg, "oversight-report")] == ["observer kg-dpo (token 2)"]

    result = CliRunner().invoke(
        main, ["--instance", str(kg.instance), "audit", "dpo", "--by", "A. DPO", "--json"]
    )
    assert result.exit_code in (0, 3), result.output
    report = json.loads(result.stdout)
    assert report["node"] == "KG" and len(report["consultations"]) == 1
    text = CliRunner().invoke(
        main, ["--instance", str(kg.instance), "audit", "dpo", "--by", "A. DPO"]
    )
    assert "Consultations (1):" in text.stdout and "test case 1" in text.stdout
    assert [e["by"] for e in entries(kg, "oversight-report")][-1] == "cli A. DPO"
    for who in ("", " ", "a\nb", "x" * 201):  # asked by nobody is not recorded
        nobody = CliRunner().invoke(
            main, ["--instance", str(kg.instance), "audit", "dpo", "--by", who]
        )
        assert nobody.exit_code == 2 and "error [who-required]" in nobody.stderr, who
    assert [e["by"] for e in entries(kg, "oversight-report")][-1] == "cli A. DPO"


def post_message(member, typ, body, to):
    answer = member.client().post(
        "/api/v1/messages", headers=member.auth(), json={"typ": typ, "body": body, "to": to}
    )
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["id"]


def test_overdue_case_requests_until_completed_or_refused(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    request, request_id = _requested(kz, "KG")
    after = request["deadline"] + 1

    def overdue(member, now):
        with member.node.sessions() as session:
            return [
                (i["direction"], i["message"], i["last_outcome"])
                for i in oversight.overdue_requests(session, now)
            ]

    assert overdue(kz, request["deadline"] - 1) == []
    assert overdue(kz, after) == [("sent", request_id, None)]
    assert overdue(kg, after) == [("received", request_id, None)]

    accepted = example_case_response(in_reply_to=request_id, outcome="accepted")
    accepted.pop("provided", None), accepted.pop("findings", None)
    accepted.pop("outstanding", None), accepted.pop("expected_by", None)
    post_message(kg, "case-response/1", accepted, ["KZ"])
    Dispatcher(kg.node).run_once()
    assert overdue(kg, after) == [("received", request_id, "accepted")]
    assert overdue(kz, after) == [("sent", request_id, "accepted")]

    post_message(kg, "case-response/1", example_case_response(in_reply_to=request_id), ["KZ"])
    Dispatcher(kg.node).run_once()
    assert overdue(kg, after) == [("received", request_id, "partial")]  # still data to come

    complete = _final_response(request_id, "complete")
    post_message(kg, "case-response/1", complete, ["KZ"])
    Dispatcher(kg.node).run_once()
    assert overdue(kg, after) == overdue(kz, after) == []


def test_overdue_requests_follow_corrections_and_withdrawals_on_both_nodes(make_federation):
    """A request whose deadline a correction moved later is not overdue at its sender
    either (the sender keeps what it first sent; the correction's body counts), and a
    withdrawn request is overdue nowhere."""
    from schemas.examples import example_withdrawal

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    request = example_case_request()
    moved_id = post_message(kz, "case-request/1", request, ["KG"])
    dropped_id = post_message(kz, "case-request/1", example_case_request(), ["KG"])
    Dispatcher(kz.node).run_once()
    after = request["deadline"] + 1

    def overdue(member):
        with member.node.sessions() as session:
            return sorted(i["message"] for i in oversight.overdue_requests(session, after))

    assert overdue(kz) == overdue(kg) == sorted([moved_id, dropped_id])
    later = {**request, "deadline": request["deadline"] + 30 * oversight.DAY}
    fix = _correcting(moved_id, "case-request/1", later, request)
    post_message(kz, "correction/1", fix, ["KG"])
    withdrawal = example_withdrawal(refers_to=dropped_id, refers_to_type="case-request/1")
    post_message(kz, "correction/1", withdrawal, ["KG"])
    Dispatcher(kz.node).run_once()
    assert overdue(kz) == overdue(kg) == []


def test_a_request_answered_by_a_response_purged_since_stays_answered(make_federation):
    """The response's retention (30 days) is shorter than the request's: once it is
    purged, its `purged` entry still says which request it completed, so the request
    is not reported overdue again on either node."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    _agreeing(fed, '"case-response/1" = 30')
    request, request_id = _requested(kz, "KG")
    complete = _final_response(request_id, "complete")
    post_message(kg, "case-response/1", complete, ["KZ"])
    assert [o.state for o in Dispatcher(kg.node).run_once()] == ["delivered"]
    later = max(int(time.time()) + 31 * oversight.DAY, request["deadline"] + 1)
    for member in (kz, kg):
        with member.node.sessions() as session:
            done = purge.run(session, member.node.policy(), now=later, by="test")
            assert [item.typ for item in done] == ["case-response/1"]
            assert oversight.overdue_requests(session, later) == []


def test_a_response_corrected_to_complete_still_counts_once_purged(make_federation):
    """KG answered `partial`, then corrected its answer to `complete`; once retention
    purged both, the purged entry keeps the outcome in force, not the first one."""

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    _agreeing(fed, '"case-response/1" = 30')
    request, request_id = _requested(kz, "KG")
    partial = example_case_response(in_reply_to=request_id, outcome="partial")
    response_id = post_message(kg, "case-response/1", partial, ["KZ"])
    complete = _final_response(request_id, "complete")
    fix = _correcting(response_id, "case-response/1", complete, partial)
    post_message(kg, "correction/1", fix, ["KZ"])
    assert [o.state for o in Dispatcher(kg.node).run_once()] == ["delivered", "delivered"]
    later = max(int(time.time()) + 31 * oversight.DAY, request["deadline"] + 1)
    for member in (kg, kz):
        with member.node.sessions() as session:
            assert oversight.overdue_requests(session, later) == []
            assert purge.run(session, member.node.policy(), now=later, by="test")
            assert oversight.overdue_requests(session, later) == []


def _requested(sender, to):
    """``sender`` sends ``to`` a case request, and its dispatcher runs once: (the
    request's body, its id)."""
    request = example_case_request()
    request_id = post_message(sender, "case-request/1", request, [to])
    Dispatcher(sender.node).run_once()
    return request, request_id


def _final_response(request_id, outcome):
    """A case-response ending ``request_id`` with ``outcome`` (nothing outstanding)."""
    response = example_case_response(in_reply_to=request_id, outcome=outcome)
    response.pop("outstanding", None), response.pop("expected_by", None)
    return response


def _correcting(original_id, typ, body, labelled_as):
    """A correction of ``original_id`` (of ``typ``) to ``body``, labelled like
    ``labelled_as`` (the original's body)."""
    from schemas.examples import example_correction

    return example_correction(
        refers_to=original_id,
        refers_to_type=typ,
        body=body,
        purpose=labelled_as["purpose"],
        legal_basis=labelled_as["legal_basis"],
        retention_days=labelled_as["retention_days"],
    )


def _agreeing(fed, retention):
    policy = (
        'version = 1\n[[agreement]]\nid = "a"\npeer = "{peer}"\n'
        'types = ["case-request/1", "case-response/1", "correction/1"]\n'
        "[retention]\n" + retention + "\n"
    )
    for member, peer in ((fed["KZ"], "KG"), (fed["KG"], "KZ")):
        (member.instance / "policy.toml").write_text(policy.format(peer=peer), encoding="utf-8")


def _overdue(member, at):
    with member.node.sessions() as session:
        return [i["message"] for i in oversight.overdue_requests(session, at)]


def test_a_sent_request_is_not_judged_by_its_first_body_once_its_correction_is_purged(
    make_federation,
):
    """The sender keeps what it first sent; once the correction that moved the
    deadline is purged (its retention is shorter), the first body is not passed off
    for the one in force: the report does not revert to the old deadline."""

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    _agreeing(fed, '"correction/1" = 30')
    request, request_id = _requested(kz, "KG")
    fix = _correcting(
        request_id,
        "case-request/1",
        {**request, "deadline": int(time.time()) + 365 * oversight.DAY},
        request,
    )
    post_message(kz, "correction/1", fix, ["KG"])
    Dispatcher(kz.node).run_once()
    at = int(time.time()) + 31 * oversight.DAY
    assert (_overdue(kz, at), _overdue(kg, at)) == ([], [])
    with kz.node.sessions() as session:
        done = purge.run(session, kz.node.policy(), now=at, by="test")
        assert [item.typ for item in done] == ["correction/1"]
        assert session.get(OutboundMessage, request_id).body_json is not None
    assert _overdue(kz, at) == []


def test_purged_answers_count_for_the_requests_of_their_direction(make_federation):
    """A response KG sent naming its own request is no answer of KZ's: once purged, it
    does not make KZ's received request answered."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    _agreeing(fed, '"case-response/1" = 30')
    request, request_id = _requested(kg, "KZ")
    odd = _final_response(request_id, "complete")
    post_message(kg, "case-response/1", odd, ["KZ"])
    Dispatcher(kg.node).run_once()
    at = max(int(time.time()) + 31 * oversight.DAY, request["deadline"] + 1)
    assert _overdue(kz, at) == [request_id]
    with kz.node.sessions() as session:
        assert purge.run(session, kz.node.policy(), now=at, by="test")
    assert _overdue(kz, at) == [request_id]
