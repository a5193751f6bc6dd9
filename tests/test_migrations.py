"""The schema is owned by Alembic migrations: on SQLite and PostgreSQL, ``upgrade``
builds every table of the models, is idempotent, and leaves nothing for autogenerate
to add (so a model cannot change without a migration)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session

from gateway import db
from gateway.errors import NodeStateError
from gateway.models import Base, H2Identifier, InboundMessage
from tests.conftest import sqlite_only


def upgraded(databases: Any) -> Engine:
    engine = db.make_engine(databases.new_url("migrations"))
    db.upgrade(engine)
    return engine


def schema_of(engine: Engine) -> dict[str, Any]:
    """Tables with their columns, indexes, unique constraints and foreign keys."""
    with engine.connect() as connection:
        inspector = inspect(connection)
        return {
            table: {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
                ],
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                    for i in inspector.get_indexes(table)
                ),
                "unique": sorted(
                    tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
                ),
                "foreign_keys": sorted(
                    (tuple(f["constrained_columns"]), f["referred_table"])
                    for f in inspector.get_foreign_keys(table)
                ),
            }
            for table in sorted(inspector.get_table_names())
        }


def differences(engine: Engine, metadata: sa.MetaData) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))


def _engine_at(databases: Any, name: str, revision: str) -> Engine:
    """A new database of ``databases``, migrated up to ``revision`` only."""
    from alembic import command

    engine = db.make_engine(databases.new_url(name))
    config = db.alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return engine


def head_revision() -> str:
    script = ScriptDirectory.from_config(db.alembic_config("sqlite://"))
    heads = script.get_heads()
    assert len(heads) == 1, f"migrations have several heads {heads}: merge them"
    return heads[0]


def test_upgrade_creates_every_model_table(databases: Any) -> None:
    engine = upgraded(databases)
    try:
        tables = set(schema_of(engine))
        assert set(Base.metadata.tables) <= tables
        assert tables - set(Base.metadata.tables) == {"alembic_version"}
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() == (
                head_revision()
            )
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(databases: Any) -> None:
    engine = upgraded(databases)
    try:
        with engine.begin() as connection:
            connection.execute(
                Base.metadata.tables["trust_lists"].insert(),
                {"version": 1, "wire": b"{}", "sha256": b"\0" * 32, "installed_at": 1},
            )
        before = schema_of(engine)
        db.upgrade(engine)
        assert schema_of(engine) == before
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT version FROM trust_lists")).all()
            revisions = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            assert [tuple(r) for r in rows] == [(1,)]  # data survives
            assert [r[0] for r in revisions] == [head_revision()]
    finally:
        engine.dispose()


def test_migrations_match_the_models(databases: Any) -> None:
    """Autogenerate finds nothing to do: every model change has its migration."""
    engine = upgraded(databases)
    try:
        assert differences(engine, Base.metadata) == []

        # The comparison is live: a model column without a migration is noticed.
        drifted = sa.MetaData()
        for table in Base.metadata.tables.values():
            table.to_metadata(drifted)
        sa.Table("api_tokens", drifted, sa.Column("scope", sa.String(40)), extend_existing=True)
        found = differences(engine, drifted)
        assert [(d[0], d[3].name) for d in found if d[0] == "add_column"] == [
            ("add_column", "scope")
        ]
    finally:
        engine.dispose()


def test_corrected_at_is_kept_from_the_bodies_of_corrections_stored_before(
    databases: Any,
) -> None:
    """Migration 0015 copies corrected_at out of stored correction bodies, and leaves
    bodies it cannot read (not an object, not JSON, a boolean) alone."""

    engine = _engine_at(databases, "backfill", "0014")
    bodies = ['{"corrected_at":1800000000}', "[1]", "null", "not json", '{"corrected_at":true}']
    with engine.begin() as connection:
        for number, body in enumerate(bodies, start=1):
            connection.execute(
                sa.text(
                    "INSERT INTO inbound_messages (id, sender, envelope_id, typ, ph, ch, iat, "
                    "exp, wire, body_json, receipt, received_at) VALUES (:id, 'KZ', :e, "
                    "'correction/1', :h, :h, 1, 2, :w, :b, :w, 1)"
                ),
                {"id": number, "e": f"id-{number}", "h": b"\0" * 32, "w": b"", "b": body},
            )
    db.upgrade(engine)
    with engine.connect() as connection:
        kept = dict(
            connection.execute(sa.text("SELECT id, corrected_at FROM inbound_messages")).all()
        )
    assert kept == {1: 1_800_000_000, 2: None, 3: None, 4: None, 5: None}
    engine.dispose()


def test_identifiers_of_h2_data_are_recorded_again_under_the_new_match_keys(
    databases: Any, monkeypatch: Any
) -> None:
    """Migrations 0016 and 0017 (match keys n2): every received message is recorded
    again under the new keys, on first need and a batch at a time, also one that a
    process of the previous version recorded (with n1 keys) after the migration ran;
    what it recorded goes. A message whose body is gone gets no identifiers."""

    from gateway import onward
    from schemas.examples import example_alert
    from schemas.names import KEY_NUMBER

    engine = _engine_at(databases, "rekey", "0015")
    body = example_alert()
    body["handling"] = {**body["handling"], "code": "H2"}
    insert_row = sa.text(
        "INSERT INTO inbound_messages (id, sender, envelope_id, typ, ph, ch, iat, exp, wire, "
        "body_json, receipt, received_at, h2_indexed_at) VALUES (:id, 'KZ', :e, 'alert/1', "
        ":h, :h, 1, 2, :w, :b, :w, 1, 5)"
    )
    stale = sa.text(
        "INSERT INTO h2_identifiers (inbound_id, originator, key) VALUES (:id, 'KZ', :k)"
    )
    with engine.begin() as connection:
        for number, held in ((1, True), (2, False), (3, True)):
            connection.execute(
                insert_row,
                {
                    "id": number,
                    "e": f"id-{number}",
                    "h": b"\0" * 32,
                    "w": b"",
                    "b": json.dumps(body) if held else None,
                },
            )
        connection.execute(stale, {"id": 1, "k": b"n1" * 16})
    db.upgrade(engine)
    with engine.begin() as connection:
        marked = dict(
            connection.execute(sa.text("SELECT id, h2_indexed_at FROM inbound_messages")).all()
        )
        recorded = connection.execute(sa.text("SELECT count(*) FROM h2_identifiers")).scalar()
        assert marked == {1: None, 2: 5, 3: None} and recorded == 0
        # A process of the previous version, still running, records message 1 its way.
        connection.execute(sa.text("UPDATE inbound_messages SET h2_indexed_at = 6 WHERE id = 1"))
        connection.execute(stale, {"id": 1, "k": b"n1" * 16})
    monkeypatch.setattr(onward, "_BATCH", 1)
    with Session(engine) as session:
        assert onward.catch_up(session, 7) == 3
        session.commit()
        rows = session.execute(sa.select(H2Identifier.inbound_id, H2Identifier.key)).all()
        versions = set(session.scalars(sa.select(InboundMessage.h2_keys_version)))
        assert onward.catch_up(session, 8) == 0
    keys = onward.identifier_keys(body)
    assert keys and sorted(rows) == sorted((n, k) for n in (1, 3) for k in keys)
    assert versions == {KEY_NUMBER}
    engine.dispose()


@pytest.mark.parametrize(
    ("before", "leaving"),
    [
        # 0026: parts of names (whole names only before).
        ("0025", {"subjects": [{"names": [{"original": "A. Nurlanova", "script": "Latn"}]}]}),
        # 0027: names in text declined.
        ("0026", {"summary": "Передали Айгерим Нурланову консулу."}),
    ],
)
def test_h2_messages_are_looked_at_again_when_their_identifiers_grow(
    databases: Any, before: str, leaving: dict[str, Any]
) -> None:
    """Migrations 0026 and 0027: a message recorded before is looked at again, so that
    data leaving in a form recognised only since meets it; one whose body is gone is
    not."""

    from gateway import onward
    from schemas.examples import example_alert
    from schemas.names import KEY_NUMBER

    engine = _engine_at(databases, "parts" + before, before)
    body = example_alert()
    assert body["handling"]["code"] == "H2"
    with engine.begin() as connection:
        for number, held in ((1, True), (2, False)):
            connection.execute(
                sa.text(
                    "INSERT INTO inbound_messages (id, sender, envelope_id, typ, ph, ch, iat, "
                    "exp, wire, body_json, receipt, received_at, h2_indexed_at, "
                    "h2_keys_version) VALUES (:id, 'KZ', :e, 'alert/1', :h, :h, 1, 2, :w, "
                    ":b, :w, 1, 5, :v)"
                ),
                {
                    "id": number,
                    "e": f"id-{number}",
                    "h": b"\0" * 32,
                    "w": b"",
                    "b": json.dumps(body) if held else None,
                    "v": KEY_NUMBER,
                },
            )
    db.upgrade(engine)
    with Session(engine) as session:
        assert onward.catch_up(session, 7) == 1
        session.commit()
        recorded = set(session.scalars(sa.select(H2Identifier.key)))
        versions = dict(
            session.execute(sa.select(InboundMessage.id, InboundMessage.h2_keys_version)).all()
        )
    assert recorded & onward.identifier_keys(leaving, outgoing=True)
    assert versions == {1: KEY_NUMBER, 2: KEY_NUMBER}
    engine.dispose()


def test_the_type_outbound_corrections_correct_is_filled_in(databases: Any) -> None:
    """Migration 0020 takes it from a correction's body, or, once retention purged the
    body, from its correction-sent audit entry and the original's type."""

    engine = _engine_at(databases, "corrects", "0019")
    rows = [
        ("case", "case-request/1", None),
        ("fix", "correction/1", '{"refers_to":"case","refers_to_type":"case-request/1"}'),
        ("purged", "correction/1", None),
        ("odd", "correction/1", "not json"),
    ]
    with engine.begin() as connection:
        for message_id, typ, body in rows:
            connection.execute(
                sa.text(
                    "INSERT INTO outbound_messages (id, typ, agency, body_json, created_at) "
                    "VALUES (:id, :typ, 'kz-police', :b, 1)"
                ),
                {"id": message_id, "typ": typ, "b": body},
            )
        entry = b'{"id":"purged","kind":"correction-sent","refers_to":"case"}'
        connection.execute(
            sa.text(
                "INSERT INTO audit_entries (seq, at, kind, entry, leaf_hash) "
                "VALUES (1, 1, 'correction-sent', :e, :h)"
            ),
            {"e": entry, "h": b"\0" * 32},
        )
    db.upgrade(engine)
    with engine.connect() as connection:
        kept = dict(
            connection.execute(sa.text("SELECT id, corrects_type FROM outbound_messages")).all()
        )
    assert kept == {
        "case": None,
        "fix": "case-request/1",
        "purged": "case-request/1",
        "odd": None,
    }
    engine.dispose()


def test_the_recipients_refusals_are_marked_as_proof_that_nothing_was_stored(
    databases: Any,
) -> None:
    """Migration 0025 marks the `rejected` events that came with the recipient's signed
    refusal, not the dispatcher's own `policy-denied` decisions (nothing sent); 0028
    unmarks those of a refusal from before the recipient's replay check."""

    engine = _engine_at(databases, "refusals", "0024")
    statements = [
        "INSERT INTO outbound_messages (id, typ, agency, body_json, created_at) "
        "VALUES ('m', 'alert/1', 'kz-police', '{}', 1)",
        "INSERT INTO envelopes (id, message_id, wire, ph, ch, iat, exp, tl) "
        "VALUES ('e', 'm', :b, :b, :b, 1, 2, 1)",
        "INSERT INTO deliveries (id, message_id, envelope_id, recipient, state, attempts, "
        "next_attempt_at, receipt_verified, updated_at) "
        "VALUES (1, 'm', 'e', 'KG', 'rejected', 3, 1, FALSE, 1)",
    ]
    events = [
        (1, "retrying", "peer-error", "KG answered HTTP 502; will retry"),
        (2, "rejected", "policy-denied", "not sent: this node's policy no longer lets it go"),
        (3, "rejected", "policy-denied", "KG refused it with a signed receipt: policy-denied"),
        (4, "rejected", "expired", "KG refused it with a signed receipt: expired"),
        (5, "rejected", "not-a-recipient", "KG refused it with a signed receipt: not-a-recipient"),
    ]
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(sa.text(statement), {"b": b"x"})
        for event_id, state, code, detail in events:
            connection.execute(
                sa.text(
                    "INSERT INTO delivery_events (id, delivery_id, at, state, code, detail) "
                    "VALUES (:id, 1, 1, :state, :code, :detail)"
                ),
                {"id": event_id, "state": state, "code": code, "detail": detail},
            )
    db.upgrade(engine)
    with engine.connect() as connection:
        marked = dict(
            connection.execute(sa.text("SELECT id, unstored_proven FROM delivery_events")).all()
        )
    assert {k: bool(v) for k, v in marked.items()} == {
        1: False,
        2: False,
        3: True,
        4: False,
        5: True,
    }
    engine.dispose()


def test_what_minimisation_removed_is_taken_from_the_audit_log(databases: Any) -> None:
    """Migration 0029 keeps with each message what minimisation removed from it, read
    from its `message-submitted` audit entry ("rule:path", the path may hold colons)."""
    engine = _engine_at(databases, "minimised", "0028")
    submitted = {
        "m1": ["ngo-no-suspect-data:**.subjects[category=suspect]", "r2:a.b:c"],
        "m2": [],
    }
    with engine.begin() as connection:
        for seq, (message_id, removed) in enumerate(submitted.items(), start=1):
            connection.execute(
                sa.text(
                    "INSERT INTO outbound_messages (id, typ, agency, body_json, created_at) "
                    "VALUES (:id, 'alert/1', 'kz-police', '{}', 1)"
                ),
                {"id": message_id},
            )
            entry = {"kind": "message-submitted", "at": 1, "id": message_id, "minimised": removed}
            connection.execute(
                sa.text(
                    "INSERT INTO audit_entries (seq, at, kind, entry, leaf_hash) "
                    "VALUES (:seq, 1, 'message-submitted', :entry, :hash)"
                ),
                {"seq": seq, "entry": json.dumps(entry).encode(), "hash": b"\0" * 32},
            )
        connection.execute(
            sa.text(
                "INSERT INTO outbound_messages (id, typ, agency, body_json, created_at) "
                "VALUES ('m3', 'alert/1', 'kz-police', '{}', 1)"
            )
        )
    db.upgrade(engine)
    with engine.connect() as connection:
        query = sa.text("SELECT id, minimised FROM outbound_messages")
        kept = dict(connection.execute(query).all())
    assert json.loads(kept["m1"]) == [
        ["ngo-no-suspect-data", "**.subjects[category=suspect]"],
        ["r2", "a.b:c"],
    ]
    assert kept["m2"] is None and kept["m3"] is None
    engine.dispose()


@sqlite_only
def test_a_migration_refused_on_sqlite_leaves_the_schema_as_it_was(databases: Any) -> None:
    """A database whose rows refer to rows that do not exist is refused before anything
    changes, and a migration runs in one transaction: the schema stays at its revision
    and the next start says the same, instead of failing on half a migration."""

    engine = _engine_at(databases, "orphan", "0020")
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.exec_driver_sql(
            "INSERT INTO delivery_events (delivery_id, at, state) VALUES (99, 1, 'queued')"
        )
        connection.commit()
    for _ in range(2):
        with pytest.raises(NodeStateError) as refused:
            db.upgrade(engine)
        assert refused.value.code == "database-damaged"
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [
                ("0020",)
            ]
            indexes = connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE name = 'ix_inbound_rejections_envelope'"
            ).all()
            assert indexes == []
    engine.dispose()
