"""Group commit (gateway/group_commit.py), on both databases: waiting writers share
one transaction, each caller gets its own item's result only once that transaction
has committed, and a failure reaches only the caller whose item caused it."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Connection, ForeignKey, Integer, MetaData, Table, event, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import registry

from gateway.db import (
    _HOLDING,
    WriterLock,
    WriterLockTimeout,
    integrity_errors,
    make_engine,
    session_factory,
)
from gateway.group_commit import GroupCommit

_META = MetaData()
_PARENTS = Table("group_parents", _META, Column("n", Integer, primary_key=True))
_ITEMS = Table(
    "group_items",
    _META,
    Column("n", Integer, primary_key=True),
    # Checked at COMMIT: an item with an unknown parent makes the commit itself fail.
    Column(
        "parent",
        Integer,
        ForeignKey("group_parents.n", deferrable=True, initially="DEFERRED"),
        nullable=True,
    ),
)


class _Item:
    """``group_items`` rows as ORM objects (for the sessions' tests)."""

    def __init__(self, n: int) -> None:
        self.n = n


registry().map_imperatively(_Item, _ITEMS)
ORPHAN = 1000  # items from 1000 up name a parent that does not exist
INTERRUPT = 999  # writing this item raises KeyboardInterrupt


@pytest.fixture
def engine(databases):
    engine = make_engine(databases.new_url("group"))
    _META.create_all(engine)
    yield engine
    engine.dispose()


def _stored(engine) -> list[int]:
    with engine.connect() as connection:
        return sorted(connection.scalars(select(_ITEMS.c.n)))


def _insert(connection: Connection, items: Sequence[int]) -> list[str]:
    for n in items:
        if n < 0:
            raise ValueError(f"item {n} is refused")
        if n == INTERRUPT:
            raise KeyboardInterrupt
        connection.execute(_ITEMS.insert().values(n=n, parent=404 if n >= ORPHAN else None))
    return [f"stored {n}" for n in items]


def _run_all(group: GroupCommit, items: list[int]) -> dict[int, object]:
    """Each item from its own thread; the result or the exception of each."""
    outcomes: dict[int, object] = {}

    def one(n: int) -> None:
        try:
            outcomes[n] = group.run(n)
        except BaseException as error:  # noqa: BLE001 - kept for the assertions
            outcomes[n] = error

    threads = [threading.Thread(target=one, args=(n,)) for n in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


def _queued_behind(engine, first: int, others: list[int], *, max_group: int = 64):
    """A group commit of ``_insert`` whose first transaction (``first``, alone) is
    held until ``others`` have all queued behind it, each from its own thread; the
    group and every item's result or exception once all are done."""
    entered, release = threading.Event(), threading.Event()

    def held(connection: Connection, items: Sequence[int]) -> list[str]:
        if not entered.is_set():
            entered.set()
            assert release.wait(timeout=30)
        return _insert(connection, items)

    group: GroupCommit[int, str] = GroupCommit(engine, held, max_group=max_group)
    outcomes: dict[int, object] = {}
    leader = threading.Thread(target=lambda: outcomes.update(_run_all(group, [first])))
    leader.start()
    assert entered.wait(timeout=30)
    queued = threading.Thread(target=lambda: outcomes.update(_run_all(group, others)))
    queued.start()
    deadline = time.monotonic() + 30
    while len(group._waiting) < len(others):
        assert time.monotonic() < deadline, "the callers did not queue up"
        time.sleep(0.005)
    release.set()
    leader.join(timeout=30)
    queued.join(timeout=30)
    return group, outcomes


def test_one_caller_writes_alone_and_gets_its_result(engine):
    group = GroupCommit(engine, _insert)
    assert group.run(7) == "stored 7"
    assert _stored(engine) == [7]
    assert (group.groups, group.items) == (1, 1)


def test_callers_that_wait_share_one_transaction(engine):
    group, outcomes = _queued_behind(engine, 0, list(range(1, 9)))
    assert outcomes == {n: f"stored {n}" for n in range(9)}
    assert _stored(engine) == list(range(9))
    assert (group.groups, group.items) == (2, 9)


def test_the_largest_group_is_bounded(engine):
    group, outcomes = _queued_behind(engine, 0, list(range(1, 8)), max_group=3)
    assert outcomes == {n: f"stored {n}" for n in range(8)}
    assert _stored(engine) == list(range(8))
    assert group.items == 8 and group.groups == 1 + 3  # 7 waiting: groups of 3, 3 and 1


def test_a_failing_item_fails_alone_and_the_others_are_written(engine):
    _, outcomes = _queued_behind(engine, 0, [1, 2, -3, 4])
    refused = outcomes.pop(-3)
    assert isinstance(refused, ValueError) and "item -3 is refused" in str(refused)
    assert outcomes == {0: "stored 0", 1: "stored 1", 2: "stored 2", 4: "stored 4"}
    assert _stored(engine) == [0, 1, 2, 4]


def test_a_failed_commit_answers_nobody_and_fails_only_its_own_item(engine):
    """Results are given after the commit, not after the write. Here the commit of a
    group fails (a deferred constraint, checked at COMMIT, broken by one item): the
    group is written again item by item, so the other items are stored and only the
    item that broke it fails; the connection that failed to commit holds nothing."""
    group, outcomes = _queued_behind(engine, ORPHAN, [1, ORPHAN + 1, 2])
    assert sorted(outcomes) == [1, 2, ORPHAN, ORPHAN + 1]
    assert (outcomes.pop(1), outcomes.pop(2)) == ("stored 1", "stored 2")
    assert all(isinstance(o, integrity_errors(engine)) for o in outcomes.values()), outcomes
    assert _stored(engine) == [1, 2]
    assert group.groups == 0  # neither group committed; 1 and 2 each committed alone
    assert group.run(3) == "stored 3"  # the pool holds no half-done transaction
    assert _stored(engine) == [1, 2, 3]


def test_a_wrong_number_of_results_is_an_error_not_a_silent_answer(engine):
    group = GroupCommit(engine, lambda connection, items: [])
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        group.run(5)


def test_an_interrupted_leader_stops_only_itself(engine):
    """An interruption (not an error) while writing a group ends the leader's own
    call; the others of the group are written alone, nobody waits for ever, and the
    group commit goes on working."""
    group, outcomes = _queued_behind(engine, 0, [1, INTERRUPT, 2])
    interrupted = [n for n, o in outcomes.items() if isinstance(o, KeyboardInterrupt)]
    assert INTERRUPT in interrupted and len(interrupted) <= 2  # the item, maybe its leader
    assert all(outcomes[n] == f"stored {n}" for n in (0, 1, 2) if n not in interrupted)
    assert INTERRUPT not in _stored(engine)
    assert group.run(5) == "stored 5"


def test_a_group_holds_at_least_one_item(engine):
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommit(engine, _insert, max_group=0)


# --------------------------------------------------------------------------- the held connection


def _checkouts(engine) -> list[int]:
    """A list that grows by one with every connection taken from ``engine``'s pool."""
    taken: list[int] = []
    event.listen(engine.pool, "checkout", lambda *_: taken.append(1))
    return taken


def _driver_connection(group: GroupCommit) -> Any:
    connection = group._held._connection
    assert connection is not None, "the group commit holds no connection"
    return connection.connection.dbapi_connection


def _is_closed(driver_connection: Any) -> bool:
    if hasattr(driver_connection, "closed"):  # psycopg
        return bool(driver_connection.closed)
    try:  # sqlite3 has no flag: a closed connection refuses to work
        driver_connection.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def cut_connection(engine, driver_connection: Any) -> None:
    """Make the connection go away under its holder: on PostgreSQL its server process
    is terminated (as when the server restarts), on SQLite it is closed."""
    if engine.dialect.name == "sqlite":
        driver_connection.close()
        return
    pid = driver_connection.info.backend_pid
    with engine.connect() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def _queued_while_first_waits(
    group: GroupCommit[int, str],
    entered: threading.Event,
    release: threading.Event,
    leading: list[int],
    others: list[int],
) -> dict[int, object]:
    """``leading`` written by one thread, whose transaction's ``first`` sets ``entered``
    and waits for ``release``; meanwhile ``others`` queue, each from its own thread;
    then ``release`` is set. Every item's result or exception once all are done."""
    outcomes: dict[int, object] = {}
    leader = threading.Thread(target=lambda: outcomes.update(_run_all(group, leading)))
    leader.start()
    assert entered.wait(timeout=30)
    queued = threading.Thread(target=lambda: outcomes.update(_run_all(group, others)))
    queued.start()
    deadline = time.monotonic() + 30
    while group._sleeping < len(others):
        assert time.monotonic() < deadline, "the callers did not queue up"
        time.sleep(0.005)
    release.set()
    leader.join(timeout=30)
    queued.join(timeout=30)
    return outcomes


def test_callers_that_come_while_the_transaction_waits_in_first_join_its_group(engine):
    """What a transaction waits for before its items (``first``: the receive path's
    audit lock on PostgreSQL) is waited for before the group is taken: the callers
    that came meanwhile are written in that same transaction."""
    entered, release = threading.Event(), threading.Event()
    began: list[bool] = []

    def first(connection: Connection) -> None:
        began.append(connection.in_transaction())
        if not entered.is_set():
            entered.set()
            assert release.wait(timeout=30)

    group: GroupCommit[int, str] = GroupCommit(engine, _insert, first=first)
    outcomes = _queued_while_first_waits(group, entered, release, [1], [2, 3, 4])
    assert outcomes == {n: f"stored {n}" for n in (1, 2, 3, 4)}
    assert (group.groups, group.items) == (1, 4)
    assert began == [True]
    assert _stored(engine) == [1, 2, 3, 4]


def test_a_failure_of_first_is_the_failure_of_the_group_it_would_have_taken(engine):
    """An error in ``first`` (before the group was taken) is a group of one's error,
    and sends a larger group (the callers waiting by then) to be written item by
    item, as any failure of a group."""
    calls: list[int] = []

    def fails_once(connection: Connection) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("the lock could not be taken")

    alone: GroupCommit[int, str] = GroupCommit(engine, _insert, first=fails_once)
    with pytest.raises(ValueError, match="could not be taken"):
        alone.run(1)
    assert alone.run(2) == "stored 2"

    entered, release = threading.Event(), threading.Event()
    tries: list[int] = []

    def fails_after_a_wait(connection: Connection) -> None:
        tries.append(1)
        if len(tries) == 1:
            entered.set()
            assert release.wait(timeout=30)
            raise ValueError("the lock could not be taken")

    group: GroupCommit[int, str] = GroupCommit(engine, _insert, first=fails_after_a_wait)
    outcomes = _queued_while_first_waits(group, entered, release, [3], [4, 5, 6])
    assert outcomes == {n: f"stored {n}" for n in (3, 4, 5, 6)}
    assert len(tries) == 5  # the failed wait, then each of the four alone
    assert group.groups == 0
    assert _stored(engine) == [2, 3, 4, 5, 6]


def test_the_writing_thread_keeps_one_connection_from_group_to_group(engine):
    group = GroupCommit(engine, _insert)
    taken = _checkouts(engine)
    assert [group.run(n) for n in (1, 2, 3)] == ["stored 1", "stored 2", "stored 3"]
    assert len(taken) == 1
    assert engine.pool.checkedout() == 1  # held, not given back between groups
    assert _stored(engine) == [1, 2, 3]


def test_a_held_connection_that_went_away_is_replaced_and_the_group_written(engine):
    """Between two groups the held connection is lost (a restarted PostgreSQL): the
    next group is written on a new connection instead of failing its callers."""
    group = GroupCommit(engine, _insert)
    assert group.run(1) == "stored 1"
    lost = _driver_connection(group)
    cut_connection(engine, lost)
    assert group.run(2) == "stored 2"
    assert _driver_connection(group) is not lost
    assert _stored(engine) == [1, 2]
    assert group.run(3) == "stored 3"


def test_after_an_error_the_held_connection_is_not_used_again(engine):
    group = GroupCommit(engine, _insert)
    assert group.run(1) == "stored 1"
    used = _driver_connection(group)
    with pytest.raises(ValueError, match="item -2 is refused"):
        group.run(-2)
    assert _is_closed(used)  # closed, which also ends what the failed transaction left
    assert group.run(3) == "stored 3"
    assert _driver_connection(group) is not used
    assert _stored(engine) == [1, 3]


def test_an_error_on_a_new_connection_is_not_retried(engine):
    """Only a reused connection can have gone stale: an error in a group on a
    connection opened for it is the group's own and reaches its caller once."""
    calls: list[int] = []

    def failing(connection: Connection, items: Sequence[int]) -> list[str]:
        calls.append(1)
        connection.connection.dbapi_connection.close()
        return _insert(connection, items)

    group = GroupCommit(engine, failing)
    with pytest.raises(Exception):  # noqa: B017 - the driver's own "closed" error
        group.run(1)
    assert len(calls) == 1
    assert _stored(engine) == []


def test_after_the_engine_is_disposed_the_held_connection_is_closed_and_replaced(engine):
    group = GroupCommit(engine, _insert)
    assert group.run(1) == "stored 1"
    held = _driver_connection(group)
    engine.dispose()
    assert group.run(2) == "stored 2"
    assert _is_closed(held)  # closed, not left open in the disposed pool
    assert _driver_connection(group) is not held
    assert _stored(engine) == [1, 2]


def test_disposing_the_engine_mid_transaction_lets_that_transaction_commit(engine):
    seen: list[Any] = []

    def disposing(connection: Connection, items: Sequence[int]) -> list[str]:
        seen.append(connection.connection.dbapi_connection)
        if len(seen) == 1:
            engine.dispose()  # from another thread in real life; here while writing
        return _insert(connection, items)

    group = GroupCommit(engine, disposing)
    assert group.run(1) == "stored 1"
    assert group.run(2) == "stored 2"
    assert _stored(engine) == [1, 2]
    assert seen[1] is not seen[0] and _is_closed(seen[0])


def test_an_error_that_is_not_a_lost_connection_is_not_retried(engine):
    """On a reused connection too, only a lost connection is worth a second run: any
    other error is the group's own and reaches its caller after one run."""
    calls: list[Sequence[int]] = []

    def counting(connection: Connection, items: Sequence[int]) -> list[str]:
        calls.append(items)
        return _insert(connection, items)

    group = GroupCommit(engine, counting)
    assert group.run(1) == "stored 1"
    with pytest.raises(integrity_errors(engine)):
        group.run(1)  # the same key again: a constraint violation, not a lost connection
    assert calls == [[1], [1]]
    assert _stored(engine) == [1]


def test_a_collected_group_commit_gives_its_connection_back(engine):
    group = GroupCommit(engine, _insert)
    assert group.run(1) == "stored 1"
    assert engine.pool.checkedout() == 1
    del group
    gc.collect()
    assert engine.pool.checkedout() == 0


def test_a_group_commit_installs_no_engine_event_listener(engine):
    """A listener on any engine event makes SQLAlchemy run its event machinery for
    every statement of that engine."""
    group = GroupCommit(engine, _insert)
    assert group.run(1) == "stored 1"
    assert not engine._has_events


# --------------------------------------------------------------------------- SQLite's lock file


@pytest.fixture
def sqlite_engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    _META.create_all(engine)
    yield engine
    engine.dispose()


def held_up_by_the_lock_file(
    path: str, write: Callable[[], Any], written: Callable[[], bool]
) -> Any:
    """Run ``write`` in a thread while another process (an open file of its own) holds
    the lock file ``path``: it must not have ``written()`` 0.3 s later; once the file
    is let go it finishes, and its result is returned."""
    other = WriterLock(path)
    assert other.acquire()
    results: list[Any] = []
    writer = threading.Thread(target=lambda: results.append(write()))
    try:
        writer.start()
        writer.join(timeout=0.3)
        assert writer.is_alive() and results == [] and not written()
    finally:
        other.release()
        other.close()
    writer.join(timeout=10)
    assert len(results) == 1
    return results[0]


def test_sqlite_writers_of_every_process_take_a_lock_file_beside_the_database(sqlite_engine):
    """Another process holding ``gateway.db-lock`` keeps a group commit from writing
    until it lets go; the write then goes through."""
    group = GroupCommit(sqlite_engine, _insert)
    path = sqlite_engine.url.database + "-lock"
    assert (
        held_up_by_the_lock_file(path, lambda: group.run(1), lambda: bool(_stored(sqlite_engine)))
        == "stored 1"
    )
    assert _stored(sqlite_engine) == [1]
    assert (Path(path).stat().st_mode & 0o777) == 0o600


def test_waiting_for_the_lock_file_longer_than_the_timeout_is_a_locked_database(tmp_path):
    """As SQLite's busy timeout would: each waiter gives up after its own timeout."""
    holder = WriterLock(str(tmp_path / "gateway.db-lock"))
    waiter = WriterLock(str(tmp_path / "gateway.db-lock"), timeout=0.05)
    assert holder.acquire()
    try:
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            waiter.acquire()
    finally:
        holder.release()
    assert waiter.acquire()  # free again, and the failed wait left nothing held
    waiter.release()
    holder.close()
    waiter.close()


def test_threads_of_one_process_take_turns_on_the_lock_file(tmp_path):
    """They share one open file, on which ``flock`` would let both in at once."""
    lock = WriterLock(str(tmp_path / "gateway.db-lock"))
    assert lock.acquire()
    second: list[bool] = []
    thread = threading.Thread(target=lambda: second.append(lock.acquire()))
    try:
        thread.start()
        thread.join(timeout=0.3)
        assert thread.is_alive() and second == []
    finally:
        lock.release()
    thread.join(timeout=10)
    assert second == [True]
    other = WriterLock(str(tmp_path / "gateway.db-lock"), timeout=0.05)
    with pytest.raises(sqlite3.OperationalError):
        other.acquire()  # the second thread holds the file now
    lock.release()
    lock.close()


def test_a_forked_process_opens_the_lock_file_for_itself(tmp_path):
    """``flock`` belongs to an open file: a child using its parent's would hold whatever
    the parent holds. The child waits for the parent's lock like any other process."""
    lock = WriterLock(str(tmp_path / "gateway.db-lock"), timeout=0.2)
    assert lock.acquire()
    parents = lock._fd
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports by its exit code
            code = 3
            try:
                code = 2
                # The parent's open file is closed here (so the parent dying with the
                # lock lets go of it), and the parent's thread's turn is not inherited.
                with contextlib.suppress(OSError):
                    os.fstat(parents)
                    raise SystemExit
                if not lock._turn.acquire(blocking=False):
                    raise SystemExit
                lock._turn.release()
                code = 1
                lock.acquire()  # it would get the parent's lock through the parent's file
            except sqlite3.OperationalError:
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        lock.release()
        lock.close()


def test_writers_go_on_without_a_lock_file_that_cannot_be_made(tmp_path, sqlite_engine):
    lock = WriterLock(str(tmp_path / "no such folder" / "gateway.db-lock"))
    assert lock.acquire() is False
    assert lock.acquire() is False  # not tried again
    group = GroupCommit(sqlite_engine, _insert)
    group._writer_lock = lock
    assert group.run(1) == "stored 1"
    assert _stored(sqlite_engine) == [1]


def test_too_many_open_files_skips_the_lock_file_once_not_for_good(tmp_path, monkeypatch, caplog):
    lock = WriterLock(str(tmp_path / "gateway.db-lock"))
    real_open = os.open

    def exhausted(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(os, "open", exhausted)
    with caplog.at_level("WARNING", logger="gateway.db"):
        assert lock.acquire() is False
    assert caplog.records == []
    monkeypatch.setattr(os, "open", real_open)
    assert lock.acquire() is True
    lock.release()
    lock.close()
    broken = WriterLock(str(tmp_path / "no such folder" / "gateway.db-lock"))
    with caplog.at_level("WARNING", logger="gateway.db"):
        assert broken.acquire() is False
        assert broken.acquire() is False
    assert ["busy handler" in r.getMessage() for r in caplog.records] == [True]


def test_only_a_sqlite_database_file_gets_a_lock_file(tmp_path):
    assert WriterLock.for_engine(make_engine("sqlite://")) is None
    assert WriterLock.for_engine(make_engine("sqlite:///:memory:")) is None
    uri = make_engine(f"sqlite:///file:{tmp_path / 'x.db'}?mode=rwc&uri=true")
    assert WriterLock.for_engine(uri) is None
    assert WriterLock.for_engine(make_engine("postgresql://u@127.0.0.1:1/none")) is None
    lock = WriterLock.for_engine(make_engine(f"sqlite:///{tmp_path / 'x.db'}"))
    assert lock is not None and lock.path == f"{tmp_path / 'x.db'}-lock"


def test_a_wait_for_the_lock_file_fails_each_caller_when_its_own_time_is_up(sqlite_engine):
    """A leader's wait counts from the oldest caller then waiting. When it times out,
    every caller whose own time is up gets the error at once (none waits again
    alone), and callers that came during the wait stay queued until their own time is
    up, not failed early: each caller fails about ``timeout`` after it came. No
    transaction begins meanwhile, and the held connection is kept.

    The bounds leave half a timeout for the hand-overs after a wait ends (a loaded
    machine), and still catch a caller that waits twice (2x) or whose wait counts from
    the later leader's start instead of its own (the second caller: 1.75x)."""
    timeout = 1.0
    group = GroupCommit(sqlite_engine, _insert)
    assert group._writer_lock is not None
    assert group.run(0) == "stored 0"
    held = group._held._connection
    group._writer_lock.timeout = timeout
    tried: list[list[int]] = []
    in_transaction = group._in_transaction

    def counted(connection: Connection, take: Callable[[], list[int]]) -> list[str]:
        items = take()
        tried.append(list(items))
        return in_transaction(connection, lambda: items)

    group._in_transaction = counted  # type: ignore[method-assign]
    waits: dict[int, float] = {}
    outcomes: dict[int, object] = {}

    def timed(n: int) -> None:
        began = time.monotonic()
        outcomes.update(_run_all(group, [n]))
        waits[n] = time.monotonic() - began

    other = WriterLock(sqlite_engine.url.database + "-lock")
    assert other.acquire()
    try:
        first = threading.Thread(target=timed, args=(1,))
        first.start()
        deadline = time.monotonic() + 30
        while not group._writing:
            assert time.monotonic() < deadline, "no leader started waiting"
            time.sleep(0.005)
        later = []
        for n in (2, 3, 4):  # one after another during the first wait
            time.sleep(timeout / 4)
            later.append(threading.Thread(target=timed, args=(n,)))
            later[-1].start()
        for thread in [first, *later]:
            thread.join(timeout=30)
    finally:
        other.release()
        other.close()
    assert sorted(outcomes) == [1, 2, 3, 4]
    assert all(isinstance(outcome, sqlite3.OperationalError) for outcome in outcomes.values())
    assert all("database is locked" in str(outcome) for outcome in outcomes.values())
    assert all(timeout * 0.9 <= wait < timeout * 1.5 for wait in waits.values()), waits
    assert tried == []
    assert _stored(sqlite_engine) == [0]
    assert group.run(6) == "stored 6"  # the lock let go: writing goes on
    assert group._held._connection is held  # kept: no transaction had begun on it


def test_an_interruption_while_taking_the_group_back_lets_go_of_the_lock_file(sqlite_engine):
    """A ``KeyboardInterrupt`` that comes while the leader, holding the lock file,
    waits to take the group's condition back is raised with the condition held and
    the lock file let go: the next write of the process goes through at once."""
    group = GroupCommit(sqlite_engine, _insert)
    lock = group._writer_lock
    assert lock is not None
    real_acquire, real_relock = lock.acquire, group._changed.acquire
    armed: list[bool] = []

    def acquire(started: float | None = None) -> bool:
        held = real_acquire(started)
        armed.append(True)
        return held

    def interrupted(*args: Any) -> bool:
        if armed:
            armed.clear()
            raise KeyboardInterrupt
        return real_relock(*args)

    lock.acquire = acquire  # type: ignore[method-assign]
    group._changed.acquire = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        group.run(1)
    lock.acquire = real_acquire  # type: ignore[method-assign]
    group._changed.acquire = real_relock  # type: ignore[method-assign]
    assert not lock._turn.locked()
    assert not group._writing and group._waiting == []
    lock.timeout = 2
    assert group.run(2) == "stored 2"
    assert _stored(sqlite_engine) == [2]


def test_callers_that_come_while_the_leader_waits_for_the_lock_file_join_its_group(
    sqlite_engine,
):
    """The leader takes its group once it holds the lock file, not before: callers
    that came while another process was committing share its transaction."""
    group = GroupCommit(sqlite_engine, _insert)
    other = WriterLock(sqlite_engine.url.database + "-lock")
    assert other.acquire()
    outcomes: dict[int, object] = {}
    try:
        leader = threading.Thread(target=lambda: outcomes.update(_run_all(group, [1])))
        leader.start()
        deadline = time.monotonic() + 30
        while not group._writing:
            assert time.monotonic() < deadline, "the leader did not start waiting"
            time.sleep(0.005)
        others = threading.Thread(target=lambda: outcomes.update(_run_all(group, [2, 3, 4])))
        others.start()
        while group._sleeping < 3:
            assert time.monotonic() < deadline, "the callers did not queue up"
            time.sleep(0.005)
    finally:
        other.release()
        other.close()
    leader.join(timeout=30)
    others.join(timeout=30)
    assert outcomes == {n: f"stored {n}" for n in (1, 2, 3, 4)}
    assert (group.groups, group.items) == (1, 4)
    assert _stored(sqlite_engine) == [1, 2, 3, 4]


def test_a_wait_for_the_lock_file_counts_from_the_given_start(tmp_path):
    holder = WriterLock(str(tmp_path / "gateway.db-lock"))
    waiter = WriterLock(str(tmp_path / "gateway.db-lock"), timeout=5)
    assert holder.acquire()
    try:
        began = time.monotonic()
        with pytest.raises(sqlite3.OperationalError):
            waiter.acquire(started=time.monotonic() - 4.9)  # 0.1 s of it left
        assert time.monotonic() - began < 2
    finally:
        holder.release()
        holder.close()


def _lock_is_free(path: str) -> bool:
    probe = WriterLock(path, timeout=0.2)
    try:
        probe.acquire()
    except sqlite3.OperationalError:
        return False
    probe.release()
    probe.close()
    return True


@pytest.mark.parametrize("how", ["flush", "update", "insert", "delete", "text"])
def test_a_session_takes_the_lock_file_at_its_first_write_until_its_transaction_ends(
    sqlite_engine, how
):
    """The node's sessions (the dispatcher, the APIs, the commands) queue on the lock
    file with the receiving workers: a write, by a flush or a statement, waits while
    another process holds it, and the file is let go at commit."""
    with sqlite_engine.begin() as connection:
        connection.execute(_ITEMS.insert().values(n=1))
    sessions = session_factory(sqlite_engine)
    path = sqlite_engine.url.database + "-lock"

    def write() -> str:
        with sessions() as session:
            session.scalars(select(_ITEMS.c.n)).all()  # reading does not take it
            if how == "flush":
                session.add(_Item(2))
            elif how == "update":
                session.execute(_ITEMS.update().where(_ITEMS.c.n == 1).values(n=2))
            elif how == "insert":
                session.execute(_ITEMS.insert().values(n=2))
            elif how == "text":  # as the audit log appends
                session.execute(text("  insert INTO group_items (n) VALUES (2)"))
            else:
                session.execute(_ITEMS.delete().where(_ITEMS.c.n == 1))
            session.commit()
            # committed: another process may write while this session goes on
            assert _lock_is_free(path)
            return "written"

    def written() -> bool:
        return _stored(sqlite_engine) != [1]

    assert held_up_by_the_lock_file(path, write, written) == "written"
    assert _stored(sqlite_engine) == {"update": [2], "delete": []}.get(how, [1, 2])
    assert _lock_is_free(path)


def test_a_session_that_fails_or_only_reads_leaves_the_lock_file_free(sqlite_engine):
    sessions = session_factory(sqlite_engine)
    path = sqlite_engine.url.database + "-lock"
    with sessions() as session:
        session.execute(_ITEMS.insert().values(n=5))
        assert not _lock_is_free(path)
        session.rollback()
    assert _lock_is_free(path)
    with pytest.raises(ValueError), sessions() as session:
        session.add(_Item(6))
        session.flush()
        raise ValueError("the request failed after its write")
    assert _lock_is_free(path)
    other = WriterLock(path)
    assert other.acquire()
    try:
        with sessions() as session:  # reads while another process holds the file
            assert session.scalars(select(_ITEMS.c.n)).all() == []
    finally:
        other.release()
        other.close()


def test_a_session_already_writing_without_the_lock_file_does_not_wait_for_it(sqlite_engine):
    """It holds SQLite's write lock, which whoever holds the file may be waiting for:
    waiting for the file then would deadlock both until their timeouts."""
    sessions = session_factory(sqlite_engine)
    other = WriterLock(sqlite_engine.url.database + "-lock")
    assert other.acquire()
    done: list[bool] = []

    def write() -> None:
        with sessions() as session:
            session.connection().exec_driver_sql("INSERT INTO group_items (n) VALUES (7)")
            session.execute(_ITEMS.insert().values(n=8))
            session.add(_Item(9))
            session.commit()
        done.append(True)

    writer = threading.Thread(target=write)
    try:
        writer.start()
        writer.join(timeout=10)
        assert done == [True]
    finally:
        other.release()
        other.close()
        writer.join(timeout=30)
    assert _stored(sqlite_engine) == [7, 8, 9]


def test_a_session_holds_the_lock_file_once_to_the_end_of_its_outer_transaction(sqlite_engine):
    """Taken once however many writes (an execute, then the autoflush of a pending
    object), kept past the end of a savepoint, let go at the outer commit."""
    sessions = session_factory(sqlite_engine)
    path = sqlite_engine.url.database + "-lock"
    with sessions() as session:
        session.add(_Item(1))
        session.execute(_ITEMS.update().where(_ITEMS.c.n == 1).values(n=2))  # autoflush
        with session.begin_nested():
            session.add(_Item(3))
        assert not _lock_is_free(path)
        session.commit()
        assert _lock_is_free(path)
    assert _stored(sqlite_engine) == [2, 3]


def test_a_flush_without_a_change_does_not_take_the_lock_file(sqlite_engine):
    sessions = session_factory(sqlite_engine)
    path = sqlite_engine.url.database + "-lock"
    with sessions() as session:
        session.add(_Item(1))
        session.commit()
    other = WriterLock(path)
    assert other.acquire()
    try:
        with sessions() as session:
            item = session.get(_Item, 1)
            assert item is not None
            item.n = 1  # set to what it was: dirty, but nothing to write
            session.flush()
            assert _HOLDING not in session.info
    finally:
        other.release()
        other.close()


def test_a_session_dropped_without_closing_lets_go_of_the_lock_file(sqlite_engine):
    sessions = session_factory(sqlite_engine)
    path = sqlite_engine.url.database + "-lock"
    session = sessions()
    session.execute(_ITEMS.insert().values(n=1))
    assert not _lock_is_free(path)
    del session
    gc.collect()
    assert _lock_is_free(path)


def test_a_session_write_that_times_out_is_a_database_error(sqlite_engine):
    """As SQLAlchemy raises SQLite's own "database is locked": the API answers 503,
    the dispatcher retries next round, a command says the database is unavailable."""
    lock = WriterLock.for_engine(sqlite_engine)
    assert lock is not None
    lock.timeout = 0.3
    other = WriterLock(lock.path)
    assert other.acquire()
    try:
        with session_factory(sqlite_engine)() as session:
            with pytest.raises(OperationalError) as raised:
                session.execute(_ITEMS.insert().values(n=1))
            assert isinstance(raised.value.orig, WriterLockTimeout)
            assert "database is locked" in str(raised.value)
    finally:
        other.release()
        other.close()


def test_a_thread_holding_the_lock_file_may_take_it_again(tmp_path):
    path = str(tmp_path / "gateway.db-lock")
    lock = WriterLock(path, timeout=5)
    assert lock.acquire()
    assert lock.acquire()  # no wait for itself
    lock.release()
    assert not _lock_is_free(path)  # the outer hold goes on
    lock.release()
    assert _lock_is_free(path)
    lock.close()
    # (other threads of the process still take turns: see
    # test_threads_of_one_process_take_turns_on_the_lock_file)
