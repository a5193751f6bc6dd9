"""identifiers of received H2 data, for originator control of onward dissemination;
the audience an outbound message was minimised for

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 03:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "h2_identifiers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inbound_id", sa.Integer(), nullable=False),
        sa.Column("originator", sa.String(length=20), nullable=False),
        sa.Column("key", sa.LargeBinary(length=32), nullable=False),
        sa.ForeignKeyConstraint(["inbound_id"], ["inbound_messages.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("h2_identifiers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_h2_identifiers_inbound_id"), ["inbound_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_h2_identifiers_key"), ["key"], unique=False)
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audience", sa.String(length=24), nullable=True))
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("h2_indexed_at", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_inbound_messages_h2_indexed_at"), ["h2_indexed_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_messages_h2_indexed_at"))
        batch_op.drop_column("h2_indexed_at")
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.drop_column("audience")
    with op.batch_alter_table("h2_identifiers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_h2_identifiers_key"))
        batch_op.drop_index(batch_op.f("ix_h2_identifiers_inbound_id"))
    op.drop_table("h2_identifiers")
