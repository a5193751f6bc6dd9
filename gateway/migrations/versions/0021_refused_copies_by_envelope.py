"""refusals found by the envelope they refused, to erase their kept bytes with it

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30 17:45:00
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # When a received message is withdrawn or purged, the bytes kept of earlier refusals
    # of the same envelope (sender, id) are erased with it: found by this index, not
    # by a scan of every refusal (a table that grows with every bad request).
    with op.batch_alter_table("inbound_rejections", schema=None) as batch_op:
        batch_op.create_index("ix_inbound_rejections_envelope", ["sender", "envelope_id"])


def downgrade() -> None:
    with op.batch_alter_table("inbound_rejections", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_rejections_envelope")
