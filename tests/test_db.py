"""gateway/db.py on both databases: a COMMIT that fails leaves nothing behind in the
connection pool (no open transaction, no write lock, no half-written rows)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.db import integrity_errors
from tests.test_group_commit import _ITEMS, ORPHAN, engine  # noqa: F401 - fixture

pytestmark = pytest.mark.usefixtures("engine")


def _count(engine) -> int:  # noqa: F811 - the fixture's name
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(_ITEMS))


def test_a_failed_core_commit_leaves_no_transaction_in_the_pool(engine):  # noqa: F811
    with pytest.raises(integrity_errors(engine)), engine.connect() as connection:
        connection.execute(_ITEMS.insert().values(n=1, parent=ORPHAN))
        connection.commit()  # the deferred foreign key is checked here, and fails
    assert _count(engine) == 0
    with engine.connect() as connection:
        connection.execute(_ITEMS.insert().values(n=2, parent=None))
        connection.commit()
    assert _count(engine) == 1


def test_a_failed_session_commit_leaves_no_transaction_in_the_pool(engine):  # noqa: F811
    with pytest.raises(integrity_errors(engine)), Session(engine) as session:
        session.execute(_ITEMS.insert().values(n=1, parent=ORPHAN))
        session.commit()
    assert _count(engine) == 0
    with Session(engine) as session:
        session.execute(_ITEMS.insert().values(n=3, parent=None))
        session.commit()
    assert _count(engine) == 1
