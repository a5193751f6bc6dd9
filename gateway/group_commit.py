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

On SQLite the transactions of a node's worker processes also queue on a lock file
beside the database (:class:`gateway.db.WriterLock`), so that a process waiting for
another's commit starts writing soon after it ends, not when SQLite's busy handler
wakes up (milliseconds later). The leader waits for the lock file first and takes
its group after: the callers that came while another process was committing (and
syncing its commit to disk) join this transaction instead of waiting for the next.
In the same way a transaction may wait for something of its own before the group is
taken (``first``: on PostgreSQL, the receive path's audit lock, which the other
processes' transactions hold until they commit).

docs/decisions/0012-group-commit.md has the measurements and the alternatives.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from gateway.db import WriterLock, WriterLockTimeout

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_GROUP = 64
"""Items written in one transaction at most (a bound on how long the lock is held)."""


class _HeldConnection:
    """The connection a group commit keeps between its transactions.

    Only the thread writing a group uses it, and one thread writes at a time
    (:class:`GroupCommit`), so it needs no lock of its own. After
    ``Engine.dispose()`` (which replaces the engine's pool) the next transaction
    closes it and opens a new one, and a group commit that is collected closes it.
    A process forked from the one that opened it leaves it alone and opens its own.
    It installs no engine event listener: one would slow every statement the
    engine runs.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None
        self._pool: Any = None  # the engine's pool when it was opened
        self._pid = 0
        self._used = False  # it has served a transaction (and may be stale since)

    def take(self) -> tuple[Connection, bool]:
        """The held connection (opened if there is none) and whether it is reused."""
        if self._connection is not None and (
            self._pid != os.getpid() or self._pool is not self._engine.pool
        ):
            self.close()
        if self._connection is None:
            self._connection = self._engine.connect()
            self._pool, self._pid, self._used = self._engine.pool, os.getpid(), False
        reused, self._used = self._used, True
        return self._connection, reused

    def discard(self) -> None:
        """Never use it again (after an error in its transaction): its database
        connection is closed, which also ends any transaction left open."""
        self._let_go(invalidate=True)

    def close(self) -> None:
        """Give it back to its pool; close it for good if that pool was disposed (a
        connection given back to a disposed pool would stay open until collected)."""
        self._let_go(invalidate=self._pool is not self._engine.pool)

    def _let_go(self, *, invalidate: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._pid != os.getpid():
            _FORKED_AWAY.append(connection)  # the parent's: never touched here
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
    started: float = field(default_factory=time.monotonic)  # when its caller came
    done: bool = False
    alone: bool = False  # the group failed: write this item in its own transaction
    result: Any = None
    error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """Run ``write(connection, items)`` for the items of concurrent callers, in one
    transaction on ``engine``, and give each caller its own item's result.

    ``write`` runs inside a begun transaction (``connection.begin()``) that is
    committed after it returns; it must return one result per item, in order.
    ``first``, if given, runs in that transaction before the items are taken: what it
    waits for (a lock) is waited for before the group is made, so the callers that
    come meanwhile join it.
    """

    def __init__(
        self,
        engine: Engine,
        write: Callable[[Connection, Sequence[Item]], list[Result]],
        *,
        first: Callable[[Connection], object] | None = None,
        max_group: int = MAX_GROUP,
    ) -> None:
        if max_group < 1:
            raise ValueError(f"max_group must be at least 1, not {max_group}")
        self._engine = engine
        self._write = write
        self._first = first
        self._max_group = max_group
        self._changed = threading.Condition(threading.Lock())
        self._waiting: list[_Slot] = []
        self._sleeping = 0  # callers in self._changed.wait(): only they need a notify
        self._writing = False
        self.groups = 0  # transactions committed (for tests and diagnosis)
        self.items = 0  # items in them
        self._held = _HeldConnection(engine)
        self._writer_lock = WriterLock.for_engine(engine)  # SQLite: shared by processes
        weakref.finalize(self, self._held.close)

    def run(self, item: Item) -> Result:
        """Write ``item`` (with whatever else is waiting) and return its result, once
        committed. Raises what writing ``item`` raised."""
        slot = _Slot(item)
        with self._changed:
            self._waiting.append(slot)
            try:
                while not slot.done:
                    if self._writing:
                        self._sleeping += 1
                        try:
                            self._changed.wait()
                        finally:
                            self._sleeping -= 1
                        continue
                    self._lead()
            except BaseException:
                if not slot.done and slot in self._waiting:
                    self._waiting.remove(slot)  # never written for a caller that is gone
                raise
        if slot.alone:
            lock = self._writer_lock
            with lock.holding(slot.started) if lock is not None else nullcontext():
                with self._engine.connect() as connection:
                    return self._in_transaction(connection, lambda: [item])[0]
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[no-any-return]

    def _lead(self) -> None:
        """Write the next group, as its leader (called holding ``_changed``, which is
        let go while waiting for the lock file and while writing); whatever happens,
        let the next leader go on after."""
        self._writing = True
        group: list[_Slot] = []
        try:
            with self._lock_file() as turn:
                if not turn:
                    return
                self._changed.release()
                try:
                    self._commit(group)
                finally:
                    self._relock()
        except BaseException:
            for slot in group:  # taken, then interrupted before _commit could say
                if not slot.done:
                    slot.alone = slot.done = True
            raise
        finally:
            self._writing = False
            if self._sleeping:
                self._changed.notify_all()

    def _relock(self) -> None:
        """Take ``_changed`` back after letting it go: the state it guards is changed
        next, so even an interruption while waiting for it (``KeyboardInterrupt``) is
        raised only once it is held."""
        interrupted: BaseException | None = None
        while True:
            try:
                self._changed.acquire()
                break
            except BaseException as error:  # noqa: BLE001 - raised below, lock held
                interrupted = interrupted or error
        if interrupted is not None:
            raise interrupted

    @contextmanager
    def _lock_file(self) -> Iterator[bool]:
        """Hold the lock file (SQLite; nothing on another database) for the group
        written inside, waiting for it with ``_changed`` let go. True once it is held
        (or written without); False if the wait timed out. The wait counts from the
        oldest caller waiting when it began; when it times out, every caller whose own
        time is up gets the error at once (rather than each waiting as long once
        more), and the others stay queued for the next leader, counting from their own
        start."""
        lock = self._writer_lock
        if lock is None:
            yield True
            return
        waited = self._waiting[: self._max_group]
        self._changed.release()
        try:
            locked = lock.acquire(min(slot.started for slot in waited))
        except WriterLockTimeout as error:
            self._relock()
            now = time.monotonic()
            for slot in waited:
                if slot.started + lock.timeout <= now:
                    slot.error, slot.done = WriterLockTimeout(*error.args), True
            self._waiting = [slot for slot in self._waiting if not slot.done]
            yield False
            return
        except BaseException:
            self._relock()
            raise
        try:
            self._relock()
        except BaseException:
            if locked:
                lock.release()
            raise
        try:
            yield True
        finally:
            if locked:
                lock.release()

    def _take(self, group: list[_Slot]) -> list[Item]:
        """The items of the group (``group`` filled with the waiting callers' slots, up
        to ``max_group``, the first time), called without holding ``_changed``."""
        if not group:
            with self._changed:
                group += self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
        return [slot.item for slot in group]

    def _commit(self, group: list[_Slot]) -> None:
        """Write the group in one transaction, filling ``group`` with its callers' slots
        once the transaction is ready for them; on failure, a group of one keeps its
        error and a larger group is sent back to be written item by item."""
        try:
            results = self._on_held(lambda: self._take(group))
        except BaseException as error:
            self._take(group)  # failed before taking it: the group of now has the error
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

    def _on_held(self, take: Callable[[], list[Item]]) -> list[Result]:
        """One transaction of the items ``take`` gives, on the held connection. After an
        error the connection is discarded; if it was a reused connection that had gone
        stale (the database restarted since), the transaction runs once more on a new
        one (``take`` then gives the same items again)."""
        connection, reused = self._held.take()
        try:
            return self._in_transaction(connection, take)
        except BaseException as error:
            try:
                stale = (
                    reused and isinstance(error, Exception) and _is_disconnect(connection, error)
                )
            finally:
                self._held.discard()
            if not stale:
                raise
        connection, _ = self._held.take()
        try:
            return self._in_transaction(connection, take)
        except BaseException:
            self._held.discard()
            raise

    def _in_transaction(
        self, connection: Connection, take: Callable[[], list[Item]]
    ) -> list[Result]:
        """One transaction: ``first``, then the items ``take`` gives (the caller holds
        the lock file, on SQLite)."""
        connection.begin()
        if self._first is not None:
            self._first(connection)
        items = take()
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
