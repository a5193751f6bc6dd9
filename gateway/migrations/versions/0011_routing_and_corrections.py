"""routes of received messages to local agencies; corrected and withdrawn states

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 03:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_routes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inbound_id", sa.Integer(), nullable=False),
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["inbound_id"], ["inbound_messages.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("inbound_id", "agency", name="uq_inbound_route"),
    )
    with op.batch_alter_table("inbound_routes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbound_routes_agency"), ["agency"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_inbound_routes_inbound_id"), ["inbound_id"], unique=False
        )
    for table in ("inbound_messages", "outbound_messages"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("state", sa.String(length=16), nullable=True))
            batch_op.add_column(sa.Column("state_by", sa.String(length=36), nullable=True))


def downgrade() -> None:
    for table in ("outbound_messages", "inbound_messages"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("state_by")
            batch_op.drop_column("state")
    with op.batch_alter_table("inbound_routes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_routes_inbound_id"))
        batch_op.drop_index(batch_op.f("ix_inbound_routes_agency"))
    op.drop_table("inbound_routes")
