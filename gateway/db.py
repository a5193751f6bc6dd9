"""Database engines and schema migrations.

SQLite (WAL, foreign keys on, busy timeout) is the embedded default; PostgreSQL
is chosen by URL. The schema is owned by Alembic migrations from the first
table: ``upgrade`` brings any database to the current head.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.expression import ClauseElement

from gateway.errors import NodeStateError

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            # Overwrite freed space with zeros, so purged and withdrawn payloads do not
            # linger in the file (gateway/purge.py also empties the write-ahead log).
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

        @event.listens_for(engine, "reset")
        def _end_open_transaction(dbapi_connection, _record, _state):  # type: ignore[no-untyped-def]
            # A COMMIT that fails on SQLite (a deferred constraint, a full disk) leaves
            # its transaction open, holding the write lock, and the pool skips its own
            # rollback (SQLAlchemy counts the transaction as ended): the next user of
            # the connection would find its writes there. If this rollback fails too,
            # the pool closes the connection, which ends the transaction.
            if dbapi_connection.in_transaction:
                dbapi_connection.rollback()

        return engine
    return create_engine(url, pool_pre_ping=True)


class DriverStatement:
    """A statement compiled once per database dialect, then run on the database
    driver's own cursor inside a SQLAlchemy ``Connection``'s transaction.

    This is for the few statements of the receive path (PROTOCOL §3 steps 6 and 9),
    where SQLAlchemy's per-call work (parameter processing, execution context,
    result object, events) cost more than the database itself: about 55 µs a
    statement on SQLite (docs/decisions/0011). Parameters go to the driver as they
    are, so they must be plain ``str``, ``int``, ``bytes`` or None; statements run
    this way fire no SQLAlchemy execution events. The caller must have begun the
    transaction on the ``Connection`` (``connection.begin()``) so that its
    ``commit()`` and ``rollback()`` end it; the driver's own errors (not wrapped
    in SQLAlchemy's) are raised, see :func:`integrity_errors`.
    """

    def __init__(self, statement: ClauseElement, *, keys: Sequence[str] | None = None) -> None:
        self._statement = statement
        self._keys = list(keys) if keys is not None else None  # an INSERT's columns
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None]] = {}

    def sql(self, dialect: Dialect) -> tuple[str, tuple[str, ...] | None]:
        """The statement as the driver takes it, and, when its parameters are positional,
        their names in order (None for named parameters)."""
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            # SQLite's parameters are positional (?): the sqlite3 module looks up each
            # named parameter's name with the interpreter lock let go, one more hand-over
            # of the lock between a worker's threads per parameter (21 of the receive
            # path's 44). psycopg takes its named parameters as they are.
            statement = self._statement.compile(dialect=dialect, column_keys=self._keys)
            names = getattr(statement, "positiontup", None)  # an SQLCompiler's, when positional
            compiled = (str(statement), None if names is None else tuple(names))
            self._compiled[dialect.name] = compiled
        return compiled

    def first(self, connection: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Run on ``connection``'s driver connection; return the first row (of a query
        or of ``RETURNING``), or None. The cursor is closed before returning, so no
        statement stays open across the commit."""
        # Both drivers (sqlite3, psycopg) execute on a new cursor of their own, without
        # the pool's cursor wrapper.
        driver = connection.connection.dbapi_connection
        assert driver is not None  # a Connection in a begun transaction holds one
        sql, names = self.sql(connection.dialect)
        cursor = driver.execute(sql, params if names is None else [params[n] for n in names])
        try:
            return cursor.fetchone() if cursor.description is not None else None
        finally:
            cursor.close()


def host_clock() -> float:
    """This host's clock (Unix seconds): one place for tests to set it wrong."""
    return time.time()


def clock_offset(connection: Connection | Session) -> float | None:
    """Seconds this host's clock is ahead of the database server's (negative when
    behind), or None when the database has no clock of its own (SQLite runs on this
    host). Dispatchers on several hosts share a PostgreSQL database and compare
    leases each with their own clock (gateway/dispatcher.py), so this says whether
    that comparison can be trusted."""
    if isinstance(connection, Session):
        connection = connection.connection()  # checked out before the clock is read
    if connection.dialect.name != "postgresql":
        return None
    before = host_clock()
    database = float(
        connection.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one()
    )
    after = host_clock()
    return (before + after) / 2 - database


def integrity_errors(connection: Connection | Engine) -> tuple[type[Exception], ...]:
    """The exception classes of a constraint violation on ``connection`` (or any
    connection of an engine): the driver's own (from a :class:`DriverStatement`) and
    SQLAlchemy's."""
    from sqlalchemy.exc import IntegrityError

    return (connection.dialect.loaded_dbapi.IntegrityError, IntegrityError)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    """Apply every migration up to head on ``engine``'s database."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, "head")
        except CommandError as e:  # e.g. a revision a newer version of the gateway wrote
            raise NodeStateError(
                "database-revision",
                f"the database's schema cannot be brought to this version's ({e}); was it "
                "upgraded by a newer version of the gateway? Run that version, or restore "
                "a backup",
            ) from e


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
