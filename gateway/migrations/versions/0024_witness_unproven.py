"""a peer's larger checkpoint that it has not proven consistent yet, and since when

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-30 21:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A peer that signed a larger checkpoint and has given no consistency proof for it
    # since unproven_since (down, busy, or never answering the proof request): an alarm
    # once that lasts longer than gateway.audit.witness.UNPROVEN_ALARM_AFTER.
    with op.batch_alter_table("witness_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unproven_since", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("unproven_size", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("unproven_note", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("unproven_last_note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("witness_state", schema=None) as batch_op:
        batch_op.drop_column("unproven_last_note")
        batch_op.drop_column("unproven_note")
        batch_op.drop_column("unproven_size")
        batch_op.drop_column("unproven_since")
