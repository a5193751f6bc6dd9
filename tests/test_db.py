"""gateway/db.py on both databases: a COMMIT that fails leaves nothing behind in the
connection pool (no open transaction, no write lock, no half-written rows)."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import Integer, bindparam, event, func, select
from sqlalchemy.orm import Session

from gateway.db import DriverStatement, integrity_errors, make_engine
from tests.test_group_commit import _ITEMS, _META, ORPHAN, engine  # noqa: F401 - fixture


def _count(engine) -> int:  # noqa: F811 - the fixture's name
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(_ITEMS))


@pytest.mark.usefixtures("engine")
def test_a_failed_core_commit_leaves_no_transaction_in_the_pool(engine):  # noqa: F811
    with pytest.raises(integrity_errors(engine)), engine.connect() as connection:
        connection.execute(_ITEMS.insert().values(n=1, parent=ORPHAN))
        connection.commit()  # the deferred foreign key is checked here, and fails
    assert _count(engine) == 0
    with engine.connect() as connection:
        connection.execute(_ITEMS.insert().values(n=2, parent=None))
        connection.commit()
    assert _count(engine) == 1


@pytest.mark.usefixtures("engine")
def test_a_failed_session_commit_leaves_no_transaction_in_the_pool(engine):  # noqa: F811
    with pytest.raises(integrity_errors(engine)), Session(engine) as session:
        session.execute(_ITEMS.insert().values(n=1, parent=ORPHAN))
        session.commit()
    assert _count(engine) == 0
    with Session(engine) as session:
        session.execute(_ITEMS.insert().values(n=3, parent=None))
        session.commit()
    assert _count(engine) == 1


class _FailingRollback(sqlite3.Connection):
    """A SQLite connection whose rollback fails while ``failing`` is set."""

    failing = False

    def rollback(self) -> None:
        if _FailingRollback.failing:
            raise sqlite3.OperationalError("disk I/O error")
        super().rollback()


@pytest.mark.parametrize("databases", ["sqlite"], indirect=True)
def test_a_connection_whose_rollback_fails_too_is_closed_not_reused(databases):
    """If even the rollback after a failed COMMIT fails, the pool closes the
    connection (ending its transaction and its write lock) instead of keeping it."""
    flaky = make_engine(databases.new_url("flaky"))

    @event.listens_for(flaky, "do_connect")
    def _factory(dialect, record, cargs, cparams):  # type: ignore[no-untyped-def]
        cparams["factory"] = _FailingRollback

    _META.create_all(flaky)
    _FailingRollback.failing = True
    try:
        with pytest.raises(integrity_errors(flaky)), flaky.connect() as connection:
            connection.execute(_ITEMS.insert().values(n=1, parent=ORPHAN))
            connection.commit()
    finally:
        _FailingRollback.failing = False
    assert flaky.pool.checkedout() == 0
    with flaky.connect() as connection:  # no write lock left behind: at once
        connection.execute(_ITEMS.insert().values(n=2, parent=None))
        connection.commit()
    assert _count(flaky) == 1
    flaky.dispose()


@pytest.mark.usefixtures("engine")
def test_a_driver_statement_binds_each_parameter_by_its_name(engine):  # noqa: F811
    """Parameters are given by name and bound by position on SQLite (by name on
    PostgreSQL): a name used twice, and names given in another order, bind alike."""
    a, b = bindparam("a", type_=Integer), bindparam("b", type_=Integer)
    statement = DriverStatement(select(a + b * a - bindparam("c", type_=Integer)))
    with engine.connect() as connection:
        connection.begin()
        assert statement.first(connection, {"c": 1, "b": 3, "a": 2}) == (7,)
        connection.rollback()
    names = statement.sql(engine.dialect)[1]
    assert names == (("a", "b", "a", "c") if engine.dialect.name == "sqlite" else None)


@pytest.mark.parametrize(("level", "pragma"), [(None, 2), ("normal", 1), ("full", 2)])
def test_a_node_on_sqlite_syncs_every_commit_unless_set_to_normal(tmp_path, caplog, level, pragma):
    """``synchronous=FULL`` (2) by default: an envelope answered with a receipt, or a
    submission answered 202, survives a power loss; ``normal`` (1) only when chosen,
    and then the node says what it risks when it starts."""
    from gateway.config import load_settings, write_instance_file
    from gateway.node import Node

    write_instance_file(tmp_path, {"node": "KZ", "sqlite_synchronous": level})
    with caplog.at_level("WARNING", logger="gateway.node"):
        node = Node(load_settings(tmp_path), keys=lambda: pytest.fail("keys not needed"))
    try:
        with node.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == pragma
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        node.engine.dispose()
    warned = [r.getMessage() for r in caplog.records if "sqlite_synchronous" in r.getMessage()]
    assert len(warned) == (level == "normal")
    assert all("power loss" in message for message in warned)


@pytest.mark.parametrize("level", ["full", "normal"])
def test_every_new_sqlite_connection_is_set_to_the_synchronous_level(tmp_path, level):
    """What the engine says to each new connection, whatever the SQLite build's default
    (which may already be FULL in WAL mode)."""

    class Recording:
        said: list[str] = []

        def cursor(self):
            return self

        def execute(self, sql):
            self.said.append(sql)

        def close(self):
            pass

        def __getattr__(self, name):  # what the dialect's own listener calls
            return lambda *args, **kwargs: None

    made = make_engine(f"sqlite:///{tmp_path / 'x.db'}", sqlite_synchronous=level)
    for listener in made.pool.dispatch.connect:
        listener(Recording(), None)
    assert f"PRAGMA synchronous={level.upper()}" in Recording.said
    assert "PRAGMA journal_mode=WAL" in Recording.said


def test_make_engine_refuses_an_unknown_synchronous_level(tmp_path):
    with pytest.raises(ValueError, match="full' or 'normal"):
        make_engine(f"sqlite:///{tmp_path / 'x.db'}", sqlite_synchronous="off")


_MIGRATE = """
import sys, time
from gateway.db import make_engine, upgrade
engine = make_engine(sys.argv[1])
while time.time() < float(sys.argv[2]):  # all start together
    time.sleep(0.001)
try:
    upgrade(engine)
except Exception as error:
    print(type(error).__name__, error)
    sys.exit(1)
"""


def test_processes_starting_together_migrate_one_after_another(databases):
    """gunicorn's workers, dispatchers and a `gateway db upgrade` may start at the same
    moment on a database that needs migrating: each must end with the schema at head,
    none fail on DDL another already ran ("already exists")."""
    import subprocess
    import sys
    import time

    from alembic.runtime.migration import MigrationContext

    from tests.test_migrations import head_revision

    url = databases.new_url("together")
    start = f"{time.time() + 2.0:.3f}"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE, url, start],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [(p.communicate(timeout=120)[0], p.returncode)[::-1] for p in processes]
    assert [code for code, _ in outputs] == [0] * 4, outputs
    migrated = make_engine(url)
    with migrated.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head_revision()
    migrated.dispose()


@pytest.mark.parametrize("databases", ["sqlite"], indirect=True)
def test_migrating_again_leaves_no_file_open(databases):
    """Each process migrates at start (and `gateway db upgrade` on demand): the lock
    file it takes for that is closed again."""
    import os

    from gateway.db import upgrade

    migrated = make_engine(databases.new_url("fds"))
    upgrade(migrated)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        upgrade(migrated)
    assert len(os.listdir("/proc/self/fd")) <= before + 1
    migrated.dispose()
