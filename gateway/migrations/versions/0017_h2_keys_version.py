"""the match-key version the identifiers of each received message were recorded with

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0 for every row: all are recorded again under the current keys, a batch at a
    # time, on first need (gateway/onward.py), also those that a process of the
    # previous version recorded after migration 0016 ran.
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("h2_keys_version", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.create_index(
            batch_op.f("ix_inbound_messages_h2_keys_version"), ["h2_keys_version"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_messages_h2_keys_version"))
        batch_op.drop_column("h2_keys_version")
