"""the index on inbound_messages.h2_indexed_at goes: nothing looks rows up by it since
0018 (pending rows are found by (h2_keys_version, id)), and every accepted envelope
wrote it

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30 02:45:00
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_messages_h2_indexed_at")


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.create_index("ix_inbound_messages_h2_indexed_at", ["h2_indexed_at"])
