"""match keys of version n2 (invisible characters dropped from names): the identifiers
of received H2 data are recorded again

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 01:45:00
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _record_again() -> None:
    # The recorded identifiers hash keys of the previous version, which no outbound
    # message's keys equal any more: without this, originator control would stop
    # seeing received H2 names. The next check (or a dispatcher) records them again
    # from every body still held (gateway/onward.py catch_up); rows without a body
    # (purged or withdrawn) stay marked, with nothing recorded.
    op.execute("DELETE FROM h2_identifiers")
    op.execute("UPDATE inbound_messages SET h2_indexed_at = NULL WHERE body_json IS NOT NULL")


def upgrade() -> None:
    _record_again()


def downgrade() -> None:
    # The previous version computes its own keys again from the bodies.
    _record_again()
