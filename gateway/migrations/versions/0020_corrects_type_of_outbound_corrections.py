"""the type an outbound correction corrects, so that a role sees the agency's
corrections of only the types it may see (kept when retention purges the body)

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30 15:50:00
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("corrects_type", sa.String(length=40), nullable=True))
    table = sa.table(
        "outbound_messages",
        sa.column("id", sa.String()),
        sa.column("typ", sa.String()),
        sa.column("body_json", sa.Text()),
        sa.column("corrects_type", sa.String()),
    )
    types = dict(connection.execute(sa.select(table.c.id, table.c.typ)).all())
    # What each correction refers to: from its body, or, once retention purged the
    # body, from its correction-sent audit entry (which names the original).
    refers_to: dict[str, str] = {}
    audit = sa.table("audit_entries", sa.column("kind", sa.String()), sa.column("entry"))
    for (raw,) in connection.execute(
        sa.select(audit.c.entry).where(audit.c.kind == "correction-sent")
    ):
        entry = _json(raw)
        if isinstance(entry.get("id"), str) and isinstance(entry.get("refers_to"), str):
            refers_to[entry["id"]] = entry["refers_to"]
    for row_id, body_json in connection.execute(
        sa.select(table.c.id, table.c.body_json).where(table.c.typ == "correction/1")
    ).all():
        corrected = _json(body_json).get("refers_to_type")
        if not isinstance(corrected, str):
            corrected = types.get(refers_to.get(row_id, ""))
        if isinstance(corrected, str):
            connection.execute(
                sa.update(table).where(table.c.id == row_id).values(corrects_type=corrected)
            )


def _json(raw: object) -> dict:  # type: ignore[type-arg]
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw).decode("utf-8", "replace")
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def downgrade() -> None:
    with op.batch_alter_table("outbound_messages", schema=None) as batch_op:
        batch_op.drop_column("corrects_type")
