"""what minimisation removed, kept with the message (shown in every view of it)

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-01 08:10:00
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Until now only the first answer to a submission said which fields minimisation
    # removed: a client whose answer was lost, repeating the request with the same
    # Idempotency-Key, never learnt it. It is now kept with the message.
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("minimised", sa.Text(), nullable=True))
    # Messages submitted before: from their `message-submitted` audit entries, which list
    # the pairs as "rule:path" (a rule id has no colon).
    bind = op.get_bind()
    entries = bind.execute(
        sa.text("SELECT entry FROM audit_entries WHERE kind = 'message-submitted' ORDER BY seq")
    )
    update = sa.text("UPDATE outbound_messages SET minimised = :minimised WHERE id = :id")
    for (raw,) in entries:
        entry = json.loads(bytes(raw))
        pairs = [item.split(":", 1) for item in entry.get("minimised") or []]
        if pairs and isinstance(entry.get("id"), str):
            bind.execute(update, {"minimised": json.dumps(pairs), "id": entry["id"]})


def downgrade() -> None:
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.drop_column("minimised")
