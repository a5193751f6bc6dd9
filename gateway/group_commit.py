"""Group commit: the writes of several request threads in one transaction.

A node's worker process answers several peers at once (gunicorn threads). Each
accepted envelope needs a short write transaction (PROTOCOL §3 step 9), and on
SQLite most of its cost is fixed per transaction, not per row: taking the write
lock, re-reading pages another connection changed, the commit itself. So a
thread that wants to write hands its item to a :class:`GroupCommit`; if no other
thread is writing, it writes at once, alone; if one is, it waits, and when that
write ends, one of the waiting threads (the leader) writes every waiting item in
one transaction, and each thread gets its own item's result. Nobody is answered
before the transaction holding its item has committed.

Failure stays per item: when a transaction of several items fails (a constraint
violation raced in by another process, an error in one item's work), it is rolled
back and each item is written again in a transaction of its own by its own
thread, so an error reaches only the request it belongs to.

The writing thread uses one connection of its own, held between transactions
(:class:`_HeldConnection`): a transaction then costs no pool checkout and no
liveness round trip, and on SQLite the connection's page cache survives from one
write to the next unless another connection wrote in between. A held connection
that failed is never used again; one that went stale between transactions (a
restarted PostgreSQL) is replaced and the transaction run once more.

docs/decisions/0012-group-commit.md has the measurements and the alternatives.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_GROUP = 64
"""Items written in one transaction at most (a bound on how long the lock is held)."""


class _HeldConnection:
    """The connection a group commit keeps between its transactions.

    Only the writing thread uses it (one at a time: :class:`GroupCommit` lets one
    thread write). It is closed when the engine is disposed (after the transaction
    in progress, if any) and when its group commit is collected; a process forked
    from the one that opened it leaves it alone and opens its own.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._pid = 0
        self._used = False  # it has served a transaction (and may be stale since)
        self._in_use = False
        self._close_after_use = False
        self._invalidate_after_use = False

    def take(self) -> tuple[Connection, bool]:
        """The held connection (opened if there is none) and whether it is reused."""
        with self._lock:
            if self._connection is not None and self._pid != os.getpid():
                _FORKED_AWAY.append(self._connection)  # the parent's: never touched here
                self._connection = None
            if self._connection is None:
                self._connection = self._engine.connect()
                self._pid, self._used = os.getpid(), False
            self._in_use = True
            reused, self._used = self._used, True
            return self._connection, reused

    def release(self) -> None:
        with self._lock:
            self._in_use = False
            if self._close_after_use:
                invalidate = self._invalidate_after_use
                self._close_after_use = self._invalidate_after_use = False
                self._close_locked(invalidate)

    def discard(self) -> None:
        """Never use the held connection again (after an error in its transaction):
        its database connection is closed, which ends any transaction left open."""
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.invalidate()
            finally:
                connection.close()

    def close(self) -> None:
        """Give it back to the pool now, or once the transaction in progress ends."""
        self._close(invalidate=False)

    def disposed(self, _engine: Engine) -> None:
        """The engine was disposed: its pool is gone, so close the connection itself
        (a connection given back to a disposed pool stays open until collected)."""
        self._close(invalidate=True)

    def _close(self, *, invalidate: bool) -> None:
        with self._lock:
            if self._in_use:
                self._close_after_use = True
                self._invalidate_after_use = self._invalidate_after_use or invalidate
            else:
                self._close_locked(invalidate)

    def _close_locked(self, invalidate: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._pid != os.getpid():
            _FORKED_AWAY.append(connection)
            return
        try:
            if invalidate:
                connection.invalidate()
        finally:
            connection.close()


_FORKED_AWAY: list[Connection] = []  # connections opened before a fork, kept from collection


@dataclass(eq=False)
class _Slot:
    item: Any
    done: bool = False
    alone: bool = False  # the group failed: write this item in its own transaction
    result: Any = None
    error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """Run ``write(connection, items)`` for the items of concurrent callers, in one
    transaction on ``engine``, and give each caller its own item's result.

    ``write`` runs inside a begun transaction (``connection.begin()``) that is
    committed after it returns; it must return one result per item, in order.
    """

    def __init__(
        self,
        engine: Engine,
        write: Callable[[Connection, Sequence[Item]], list[Result]],
        *,
        max_group: int = MAX_GROUP,
    ) -> None:
        if max_group < 1:
            raise ValueError(f"max_group must be at least 1, not {max_group}")
        self._engine = engine
        self._write = write
        self._max_group = max_group
        self._changed = threading.Condition(threading.Lock())
        self._waiting: list[_Slot] = []
        self._writing = False
        self.groups = 0  # transactions committed (for tests and diagnosis)
        self.items = 0  # items in them
        self._held = _HeldConnection(engine)
        event.listen(engine, "engine_disposed", self._held.disposed)
        weakref.finalize(self, _forget, engine, self._held)

    def run(self, item: Item) -> Result:
        """Write ``item`` (with whatever else is waiting) and return its result, once
        committed. Raises what writing ``item`` raised."""
        slot = _Slot(item)
        with self._changed:
            self._waiting.append(slot)
            try:
                while not slot.done:
                    if self._writing:
                        self._changed.wait()
                        continue
                    self._lead()
            except BaseException:
                if not slot.done and slot in self._waiting:
                    self._waiting.remove(slot)  # never written for a caller that is gone
                raise
        if slot.alone:
            with self._engine.connect() as connection:
                return self._in_transaction(connection, [item])[0]
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[no-any-return]

    def _lead(self) -> None:
        """Write the next group, as its leader (called holding the lock, which is let
        go while writing); whatever happens, let the next leader go on after."""
        self._writing = True
        group: list[_Slot] = []
        try:
            group = self._waiting[: self._max_group]
            del self._waiting[: self._max_group]
            self._changed.release()
            try:
                self._commit(group)
            finally:
                self._changed.acquire()
        except BaseException:
            for slot in group:  # taken, then interrupted before _commit could say
                if not slot.done:
                    slot.alone = slot.done = True
            raise
        finally:
            self._writing = False
            self._changed.notify_all()

    def _commit(self, group: list[_Slot]) -> None:
        """Write ``group`` in one transaction; on failure, a group of one keeps its
        error and a larger group is sent back to be written item by item."""
        try:
            results = self._on_held([slot.item for slot in group])
        except BaseException as error:
            # An error of a group of one is its caller's; a larger group, or an
            # interruption of the leader (which it raises itself), is written again
            # item by item by each caller.
            mine = isinstance(error, Exception) and len(group) == 1
            for slot in group:
                if mine:
                    slot.error = error
                else:
                    slot.alone = True
                slot.done = True
            if not isinstance(error, Exception):
                raise
            return
        self.groups += 1
        self.items += len(group)
        for slot, result in zip(group, results, strict=True):
            slot.result, slot.done = result, True

    def _on_held(self, items: list[Item]) -> list[Result]:
        """One transaction of ``items`` on the held connection. After an error the
        connection is discarded; if it was a reused connection that had gone stale
        (the database restarted since), the transaction runs once more on a new one."""
        connection, reused = self._held.take()
        try:
            return self._in_transaction(connection, items)
        except Exception as error:
            stale = reused and _is_disconnect(connection, error)
            self._held.discard()
            if not stale:
                raise
        except BaseException:
            self._held.discard()
            raise
        finally:
            self._held.release()
        connection, _ = self._held.take()
        try:
            return self._in_transaction(connection, items)
        except BaseException:
            self._held.discard()
            raise
        finally:
            self._held.release()

    def _in_transaction(self, connection: Connection, items: list[Item]) -> list[Result]:
        connection.begin()
        results = self._write(connection, items)
        if len(results) != len(items):
            raise RuntimeError(f"{len(results)} results for {len(items)} items")
        connection.commit()
        return results


def _is_disconnect(connection: Connection, error: Exception) -> bool:
    """Whether ``error`` says the database connection itself is gone, as SQLAlchemy
    decides it for its own statements (``DBAPIError.connection_invalidated``) and
    for the driver's errors raised by statements run on the driver's cursor."""
    if isinstance(error, DBAPIError):
        return bool(error.connection_invalidated)
    dialect = connection.dialect
    if not isinstance(error, dialect.loaded_dbapi.Error):
        return False
    try:
        dbapi_connection = connection.connection.dbapi_connection
    except Exception:  # noqa: BLE001 - an invalidated connection has none: it is gone
        return True
    return bool(dialect.is_disconnect(error, dbapi_connection, None))


def _forget(engine: Engine, held: _HeldConnection) -> None:
    """A group commit is collected: close its held connection (returning it to the
    pool, rather than leaving it to the garbage collector) and stop listening."""
    held.close()
    if event.contains(engine, "engine_disposed", held.disposed):
        event.remove(engine, "engine_disposed", held.disposed)
