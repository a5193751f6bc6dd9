"""corrections that arrived before the message they refer to

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 19:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "early_corrections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=20), nullable=False),
        sa.Column("refers_to", sa.String(length=36), nullable=False),
        sa.Column("refers_to_type", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("correction_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["correction_id"], ["inbound_messages.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("early_corrections", schema=None) as batch_op:
        batch_op.create_index("ix_early_corrections_original", ["sender", "refers_to"])


def downgrade() -> None:
    with op.batch_alter_table("early_corrections", schema=None) as batch_op:
        batch_op.drop_index("ix_early_corrections_original")
    op.drop_table("early_corrections")
