"""audit subtree hashes for proofs in O(log n)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 02:25:00.000000

The table starts empty on a log that already has entries: the next checkpoint fills
it from the entries (``gateway.audit.log.checkpoint``), and until then proofs read
leaf hashes instead, as before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_subtrees",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx"),
    )


def downgrade() -> None:
    op.drop_table("audit_subtrees")
