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

docs/decisions/0012-group-commit.md has the measurements and the alternatives.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_GROUP = 64
"""Items written in one transaction at most (a bound on how long the lock is held)."""


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
            return self._transaction([item])[0]
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
            results = self._transaction([slot.item for slot in group])
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

    def _transaction(self, items: list[Item]) -> list[Result]:
        with self._engine.connect() as connection:
            connection.begin()
            results = self._write(connection, items)
            if len(results) != len(items):
                raise RuntimeError(f"{len(results)} results for {len(items)} items")
            connection.commit()
        return results
