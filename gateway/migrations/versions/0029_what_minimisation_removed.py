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
    # Read as a stream (a large log is not held in memory at once); only the few
    # messages that had something removed are kept for the updates after it.
    bind = op.get_bind()
    entries = bind.execute(
        sa.text(
            "SELECT entry FROM audit_entries WHERE kind = 'message-submitted' ORDER BY seq"
        ).execution_options(stream_results=True, yield_per=1000)
    )
    found = []
    for (raw,) in entries:
        entry = json.loads(bytes(raw))
        pairs = [item.split(":", 1) for item in entry.get("minimised") or []]
        if pairs and isinstance(entry.get("id"), str):
            found.append({"minimised": json.dumps(pairs), "id": entry["id"]})
    if found:
        bind.execute(
            sa.text("UPDATE outbound_messages SET minimised = :minimised WHERE id = :id"), found
        )


def downgrade() -> None:
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.drop_column("minimised")
