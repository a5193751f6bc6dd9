"""purge of payloads when their retention ends

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 02:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purged_at", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purged_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
