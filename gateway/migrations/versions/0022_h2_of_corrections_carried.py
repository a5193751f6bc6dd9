"""corrections whose carried body is H2 data: their identifiers recorded again

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-30 18:25:00
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A received correction counts as H2 data when the body it carries is H2, not only
    # when its own handling code is (gateway/onward.py): the corrections still holding a
    # body are looked at again (version 0: pending), on first need or by the dispatcher.
    op.execute(
        "UPDATE inbound_messages SET h2_keys_version = 0, h2_indexed_at = NULL "
        "WHERE typ = 'correction/1' AND body_json IS NOT NULL"
    )


def downgrade() -> None:
    pass  # what was recorded stays valid for the earlier version too
