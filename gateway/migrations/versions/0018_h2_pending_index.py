"""the messages whose H2 identifiers are to be recorded, found by one index in id order

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 02:30:00
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A range on h2_keys_version alone made SQLite scan the table by id before every
    # check; "= 0" on (h2_keys_version, id) reads only the pending rows, in id order.
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_messages_h2_keys_version")
        batch_op.create_index("ix_inbound_messages_h2_pending", ["h2_keys_version", "id"])


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_messages_h2_pending")
        batch_op.create_index("ix_inbound_messages_h2_keys_version", ["h2_keys_version"])
