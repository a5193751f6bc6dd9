"""the order in which quarantined messages were released, for agency pagers

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 20:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("released_seq", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_inbound_messages_released_seq"), ["released_seq"], unique=False
        )
    # Messages released before: numbered in the order of their release.
    released = sa.table(
        "inbound_messages",
        sa.column("id", sa.Integer()),
        sa.column("released_at", sa.BigInteger()),
        sa.column("released_seq", sa.BigInteger()),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(released.c.id)
        .where(released.c.released_at.is_not(None))
        .order_by(released.c.released_at, released.c.id)
    ).all()
    for number, (row_id,) in enumerate(rows, start=1):
        connection.execute(
            sa.update(released).where(released.c.id == row_id).values(released_seq=number)
        )


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_messages_released_seq"))
        batch_op.drop_column("released_seq")
