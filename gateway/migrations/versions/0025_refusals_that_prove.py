"""delivery events that prove the recipient stored nothing (its signed refusal)

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-30 23:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A `rejected` event proved that the recipient stored nothing only when it came with
    # the recipient's signed refusal; the dispatcher's own decision not to send (its
    # policy no longer allowing it) is `rejected` too and proves nothing about an
    # earlier attempt (gateway.outbox.may_have_arrived).
    with op.batch_alter_table("delivery_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unstored_proven", sa.Boolean(), nullable=True))
    # Before: the recipient's refusals were recorded with this detail, the local
    # decisions with "not sent: ...".
    op.execute(
        "UPDATE delivery_events SET unstored_proven = TRUE WHERE state = 'rejected' "
        "AND detail LIKE '% refused it with a signed receipt: %'"
    )


def downgrade() -> None:
    with op.batch_alter_table("delivery_events", schema=None) as batch_op:
        batch_op.drop_column("unstored_proven")
