"""Database engines and schema migrations.

SQLite (WAL, foreign keys on, busy timeout) is the embedded default; PostgreSQL
is chosen by URL. The schema is owned by Alembic migrations from the first
table: ``upgrade`` brings any database to the current head.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.expression import ClauseElement, TextClause, TextualSelect

from gateway.config import SQLITE_SYNCHRONOUS
from gateway.errors import NodeStateError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str, *, sqlite_synchronous: str = "full") -> Engine:
    """An engine for ``url``. On SQLite every connection runs in WAL mode with
    ``PRAGMA synchronous`` at ``sqlite_synchronous`` (``full``: each commit is synced
    to disk, so an answer given after it survives a power loss; ``normal``: synced at
    checkpoints only). PostgreSQL keeps the server's own durability settings."""
    if sqlite_synchronous not in SQLITE_SYNCHRONOUS:
        raise ValueError(
            f"sqlite_synchronous must be 'full' or 'normal', not {sqlite_synchronous!r}"
        )
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous.upper()}")
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


def unavailable(error: BaseException) -> str:
    """The sentence for a database that cannot be used: the driver's reason on one line
    (at most 300 characters) and what to check."""
    reason = " ".join(str(getattr(error, "orig", None) or error).split())[:300]
    return (
        f"cannot use the database: {reason}; check database_url and that the database "
        "server is running"
    )


def missing_table(error: BaseException) -> bool:
    """A table of the node is not there (SQLite: "no such table"; PostgreSQL's
    ``undefined_table``, SQLSTATE 42P01): a damaged database, not an unreachable one.
    ``error`` is SQLAlchemy's (the driver's error in ``orig``) or the driver's own, as
    raised by a :class:`DriverStatement`."""
    cause = getattr(error, "orig", None) or error
    if isinstance(cause, sqlite3.OperationalError):
        return str(cause).startswith("no such table:")
    # psycopg's UndefinedTable (psycopg is an optional dependency: not imported here).
    return type(cause).__module__.startswith("psycopg") and (
        getattr(cause, "sqlstate", None) == "42P01"
    )


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


class WriterLockTimeout(sqlite3.OperationalError):
    """A wait for :class:`WriterLock` that reached its timeout (answered like SQLite's
    own "database is locked": 503 storage-unavailable)."""


class WriterLock:
    """A lock file beside a SQLite database (``gateway.db-lock``), taken by every
    writer of a node's processes: the group commits around their write transactions
    (gateway/group_commit.py), and every ORM session of :func:`session_factory` from
    its first write to the end of its transaction (the dispatcher, the agency and
    admin APIs, refusals, the commands), and schema migrations (:func:`upgrade`, with
    a wait of its own). The checkpoint of the write-ahead log after a purge, and
    statements run on a session's own ``connection()`` do not take it (they never
    wait for it either).

    SQLite lets one connection write at a time. A connection that finds the write
    lock taken waits in SQLite's busy handler, which sleeps 1, 2, 5, 10 ms and more
    between tries: with every commit synced to disk (``synchronous=FULL``) a writer
    holds the lock for about as long as the sync takes, often less than the first
    sleep, so a worker process could stay idle for longer than the write it waited
    for. A writer here tries the lock file instead, every ``FIRST_PAUSE`` at first
    and at least every ``LONGEST_PAUSE``, and so starts soon after the other's
    commit ends. (These are the pauses asked for; the kernel's timer slack stretches
    them, to about 0.1 and 0.35 ms on the test machine.) The database's own lock
    still decides who writes (a writer that does not take this file, such as an older
    version's process or the ``sqlite3`` shell, meets it with its busy timeout); this
    only shortens the waits of those that take it.

    A wait ends ``timeout`` (SQLite's busy timeout) after the time it is given as
    its start, with :class:`WriterLockTimeout`, the driver's ``OperationalError``,
    as SQLite's own wait would: a process stopped while it holds the file, or one
    waiting for a long write of another kind, makes the others fail after that
    time, each counted from its own start (:class:`GroupCommit` gives a group's
    oldest caller's), not one after another. If the file cannot be opened or
    locked (a file system without ``flock``), writers go on without it, and the
    process logs a warning once.

    Locks of ``flock`` belong to an open file, so each process opens the file for
    itself (a child closes its copy of its parent's). Within a process, the
    threads that write take turns on a lock of their own, since they share the
    open file. A thread that holds the lock may take it again without waiting for
    itself (a session holding it has not written yet, say a flush whose statement
    failed, and another session of the same thread writes): it is let go when the
    outermost holder lets go."""

    FIRST_PAUSE = 20e-6
    LONGEST_PAUSE = 250e-6

    def __init__(self, path: str, timeout: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
        self.path = path
        self.timeout = timeout  # seconds a wait may last
        self._fd = -1
        self._pid = 0
        self._unusable = False
        self._turn = threading.Lock()  # the writing threads of this process
        self._owner = 0  # the thread holding the lock (threading.get_ident()), or 0
        self._depth = 0  # how many times it took it
        _WRITER_LOCKS.add(self)

    @classmethod
    def for_engine(cls, engine: Engine) -> WriterLock | None:
        """The lock of ``engine``'s SQLite database file, one per engine in a process
        (its writers take turns on it); None for another database, an in-memory one,
        or a URI filename (no single file to put it beside)."""
        url = engine.url
        if url.get_backend_name() != "sqlite" or url.query.get("uri"):
            return None
        if not url.database or url.database == ":memory:":
            return None
        with _SHARED_LOCK:
            lock = _SHARED.get(engine)
            if lock is None:
                lock = _SHARED[engine] = cls(url.database + "-lock")
                weakref.finalize(engine, lock.close)
            return lock

    def _file(self) -> int:
        if self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def _locked(self) -> WriterLockTimeout:
        return WriterLockTimeout(
            f"database is locked: another writer held {self.path} for {self.timeout:g} s"
        )

    def acquire(self, started: float | None = None) -> bool:
        """Wait for the lock, until ``timeout`` after ``started`` (a ``time.monotonic()``
        reading; now if None): True once held. False when the file cannot be used, so
        that the caller writes without it (for good in this process, unless the
        process or the system had too many open files)."""
        if self._unusable:
            return False
        if self._owner == threading.get_ident():
            self._depth += 1
            return True
        deadline = (time.monotonic() if started is None else started) + self.timeout
        if not self._turn.acquire(timeout=max(deadline - time.monotonic(), 0)):
            raise self._locked()
        try:
            fd = self._file()
            pause = self.FIRST_PAUSE
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self._owner, self._depth = threading.get_ident(), 1
                    return True
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise self._locked() from None
                time.sleep(pause)
                pause = min(pause * 2, self.LONGEST_PAUSE)
        except OSError as error:
            self._turn.release()
            if error.errno not in (errno.EMFILE, errno.ENFILE):
                self._unusable = True
                log.warning(
                    "cannot use the lock file %s (%s): receiving processes wait in "
                    "SQLite's busy handler instead, which is slower",
                    self.path,
                    error.strerror,
                )
            return False
        except BaseException:
            self._turn.release()
            raise

    @contextlib.contextmanager
    def holding(self, started: float | None = None) -> Iterator[None]:
        """Hold the lock (see :meth:`acquire`) for the write transaction run inside."""
        locked = self.acquire(started)
        try:
            yield
        finally:
            if locked:
                self.release()

    def release(self) -> None:
        if self._depth > 1:
            self._depth -= 1
            return
        self._owner, self._depth = 0, 0
        # The file closed meanwhile (at exit) holds no lock any more: nothing to undo.
        try:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._turn.release()

    def close(self) -> None:
        if self._fd >= 0 and self._pid == os.getpid():
            os.close(self._fd)
        self._fd, self._pid = -1, 0

    def _after_fork(self) -> None:
        """In a child: let go of the parent's open file (its lock stays the parent's
        while the parent keeps it open) and of a turn a parent's thread held."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd, self._pid = -1, 0
        self._turn = threading.Lock()
        self._owner, self._depth = 0, 0


_WRITER_LOCKS: weakref.WeakSet[WriterLock] = weakref.WeakSet()
# One per engine in a process, shared by its writers (the group commit, the sessions).
_SHARED: weakref.WeakKeyDictionary[Engine, WriterLock] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def _writer_locks_after_fork() -> None:
    for lock in list(_WRITER_LOCKS):
        lock._after_fork()


os.register_at_fork(after_in_child=_writer_locks_after_fork)


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


#: PostgreSQL advisory lock of schema migrations ("xb1m"; the audit log's is "xb1a").
MIGRATION_LOCK_KEY = 0x7862316D
#: How long a process waits for another's migration on SQLite (a long one rewrites rows).
MIGRATION_WAIT = 3600.0


def upgrade(engine: Engine) -> None:
    """Apply every migration up to head on ``engine``'s database.

    Processes starting together (gunicorn's workers, dispatchers, ``gateway db
    upgrade`` while the node runs) migrate one after another: on PostgreSQL under an
    advisory lock taken first in the migrating transaction, on SQLite under the lock
    file beside the database (held for the whole migration). The next one then finds
    the schema at head and does nothing, where it would otherwise run the same DDL
    again and fail ("already exists"). On SQLite the migration runs in one explicit
    transaction (the driver would otherwise commit each schema change as it runs, and
    a migration failing half-way would leave its first changes behind); foreign keys
    are not enforced while tables are rebuilt (a rebuild drops the old table, which
    enforcement would refuse while rows refer to it), and are checked as a whole
    before it and before the commit. A database already at head (every start but the
    first after an upgrade) is left as it is, unchecked."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    sqlite = engine.dialect.name == "sqlite"
    path = engine.url.database if sqlite else None
    lock = (
        WriterLock(path + "-lock", timeout=MIGRATION_WAIT)
        if path and path != ":memory:" and not engine.url.query.get("uri")
        else None
    )
    try:
        with lock.holding() if lock is not None else contextlib.nullcontext():
            _migrate(engine, config, sqlite)
    finally:
        if lock is not None:
            lock.close()


def _migrate(engine: Engine, config: Config, sqlite: bool) -> None:
    """:func:`upgrade`'s migration, its lock held."""
    with engine.connect() as connection:
        if sqlite:  # outside any transaction, or SQLite ignores it
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                if sqlite:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                if engine.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                if _at_head(connection, config):
                    return  # the usual start: nothing to migrate, nothing to check
                if sqlite:
                    _require_foreign_keys_hold(connection)  # before anything changes
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                if sqlite:
                    _require_foreign_keys_hold(connection)
        except CommandError as e:  # e.g. a revision a newer version of the gateway wrote
            raise NodeStateError(
                "database-revision",
                f"the database's schema cannot be brought to this version's ({e}); was "
                "it upgraded by a newer version of the gateway? Run that version, or "
                "restore a backup",
            ) from e
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def _at_head(connection: Connection, config: Config) -> bool:
    """Whether the database's schema is at this version's head revision."""
    heads = ScriptDirectory.from_config(config).get_heads()
    return MigrationContext.configure(connection).get_current_heads() == tuple(heads)


def _require_foreign_keys_hold(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise NodeStateError(
            "database-damaged",
            f"{len(broken)} row(s) refer to rows that do not exist (first: table "
            f"{broken[0][0]}, row {broken[0][1]}, referring to {broken[0][2]}); nothing was "
            "migrated: restore the database from a backup",
        )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions of ``engine``. On a SQLite file, a session takes the database's
    :class:`WriterLock` just before its first write (a flush with changes, or an
    ``INSERT``, ``UPDATE`` or ``DELETE`` it executes, textual ones included) and lets
    go when its outer transaction ends, so that its writes queue with the receiving
    workers' instead of sleeping in SQLite's busy handler
    (docs/decisions/0012-group-commit.md). A wait that times out raises
    SQLAlchemy's ``OperationalError`` (its ``orig`` the :class:`WriterLockTimeout`), as
    SQLite's own "database is locked" would. A session whose connection is already
    writing without the lock (a statement run on ``session.connection()``) does not
    wait for it: it holds SQLite's write lock, and whoever holds the file may be
    waiting for that. A session dropped without being closed lets go of the lock when
    it is collected."""
    factory = sessionmaker(engine, expire_on_commit=False)
    lock = WriterLock.for_engine(engine)
    if lock is not None:
        _queue_writes(factory, lock)
    return factory


_HOLDING = "gateway.writer_lock"  # in Session.info: the _Hold of the lock it holds
_WRITING_VERBS = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE"})


def _writes(statement: Any) -> bool:
    """Whether a textual statement (``text()``, such as the audit log's append, or one
    with ``.columns()``) writes. One that begins with ``WITH`` is taken for a read."""
    if isinstance(statement, TextualSelect):
        statement = statement.element
    if not isinstance(statement, TextClause):
        return False
    words = statement.text.split(None, 1)
    return bool(words) and words[0].upper() in _WRITING_VERBS


class _Hold:
    """A session's hold of the lock: let go when its transaction ends, or when the
    session is collected without having been closed (which would otherwise keep
    every writer of the process waiting until their timeouts, for good)."""

    def __init__(self, session: Session, lock: WriterLock) -> None:
        self._lock: WriterLock | None = lock
        self._collected = weakref.finalize(session, self.release)

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            self._collected.detach()
            lock.release()


def _queue_writes(factory: sessionmaker[Session], lock: WriterLock) -> None:
    def before_writing(session: Session) -> None:
        if _HOLDING in session.info:
            return
        driver = session.connection().connection.dbapi_connection
        if driver is not None and driver.in_transaction:
            return  # written already without the lock: never wait for it now
        try:
            held = lock.acquire()
        except WriterLockTimeout as error:
            # As SQLAlchemy raises SQLite's own "database is locked", so that the
            # handlers of database errors (the API's 503, the commands', the
            # dispatcher's) meet it alike.
            raise OperationalError(None, None, error) from error
        if held:
            session.info[_HOLDING] = _Hold(session, lock)

    @event.listens_for(factory, "before_flush")
    def _flushing(session: Session, _context: Any, _instances: Any) -> None:
        # Only objects with a change to write: an attribute set to its own value
        # makes an object dirty without any statement.
        if (
            session.new
            or session.deleted
            or any(session.is_modified(instance) for instance in session.dirty)
        ):
            before_writing(session)

    @event.listens_for(factory, "do_orm_execute")
    def _executing(state: Any) -> None:
        if state.is_insert or state.is_update or state.is_delete or _writes(state.statement):
            before_writing(state.session)

    @event.listens_for(factory, "after_transaction_end")
    def _ended(session: Session, transaction: Any) -> None:
        if transaction.parent is None:
            held = session.info.pop(_HOLDING, None)
            if held is not None:
                held.release()
