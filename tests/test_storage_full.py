"""A node whose database cannot be written (a full disk) answers every request with a
clear, stable error instead of an internal error, stores nothing half-done, and works
again once there is room: peers and agencies retry (THREATS, operator mistakes)."""

from __future__ import annotations

import sqlite3

from sqlalchemy import event, func, select

from gateway.inbox import receive
from gateway.models import InboundMessage, OutboundMessage
from tests.conftest import sqlite_only
from tests.test_exchange import deliveries, inbox_count, submit


def _fill_up(node):
    """From now on, every connection of ``node``'s SQLite database may not grow the
    file beyond its present size: the next write that needs a new page fails with
    SQLite's "database or disk is full", as on a full disk."""

    def no_room(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    node.engine.dispose()
    with node.engine.connect() as connection:  # no free pages left to reuse either
        connection.exec_driver_sql("VACUUM")
    node.engine.dispose()
    event.listen(node.engine, "connect", no_room)  # every connection from now on is new
    return no_room


def _make_room(node, listener) -> None:
    event.remove(node.engine, "connect", listener)
    node.engine.dispose()


# The full disk is simulated with SQLite's own means: these tests run on SQLite only.


def _count(member, model) -> int:
    with member.node.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@sqlite_only
def test_a_full_disk_refuses_envelopes_with_a_clear_error_and_then_accepts_them(
    make_federation,
):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    wire = deliveries(kz)[0].envelope.wire
    full = _fill_up(kg.node)
    answer = kg.client().post("/xb1/envelopes", data=wire, content_type="application/xb1+json")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["error"] == "storage-unavailable"
    assert "database" in body["message"] and "retry" in body["message"]
    assert answer.headers.get("Retry-After") == "30"
    _make_room(kg.node, full)
    assert inbox_count(kg) == 0
    assert receive(kg.node, wire).status == 200  # the sender's retry gets through
    assert inbox_count(kg) == 1


@sqlite_only
def test_a_full_disk_refuses_a_submission_and_stores_none_of_it(make_federation):
    """Here the disk fills up as the submission commits (SQLite's own error for it is
    raised at COMMIT): none of the message is kept, and the same request later works."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    failing: list[int] = []

    def note_message(connection, _cursor, statement, *_):  # type: ignore[no-untyped-def]
        if statement.startswith("INSERT INTO outbound_messages"):
            connection.info["storing a message"] = True

    def disk_full(connection):  # type: ignore[no-untyped-def]
        if connection.info.pop("storing a message", False):
            failing.append(1)
            raise sqlite3.OperationalError("database or disk is full")

    event.listen(kz.node.engine, "before_cursor_execute", note_message)
    event.listen(kz.node.engine, "commit", disk_full)
    answer = kz.client().post(
        "/api/v1/messages",
        headers=kz.auth(),
        json={"typ": "alert/1", "body": _alert(), "to": ["KG"]},
    )
    event.remove(kz.node.engine, "commit", disk_full)
    event.remove(kz.node.engine, "before_cursor_execute", note_message)
    assert failing == [1]  # the submission's own commit failed
    assert answer.status_code == 503, answer.get_json()
    assert answer.get_json()["error"] == "storage-unavailable"
    assert _count(kz, OutboundMessage) == 0
    assert submit(kz, ["KG"])["deliveries"]
    assert _count(kz, OutboundMessage) == 1 and _count(kz, InboundMessage) == 0


def _alert():
    from schemas.examples import example_alert

    return example_alert()
