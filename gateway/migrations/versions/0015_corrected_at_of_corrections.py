"""the corrected_at of corrections, kept when retention purges their bodies

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29 20:30:00
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TABLES = ("inbound_messages", "outbound_messages")


def upgrade() -> None:
    connection = op.get_bind()
    for name in TABLES:
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.add_column(sa.Column("corrected_at", sa.BigInteger(), nullable=True))
        table = sa.table(
            name,
            sa.column("id"),
            sa.column("typ", sa.String()),
            sa.column("body_json", sa.Text()),
            sa.column("corrected_at", sa.BigInteger()),
        )
        rows = connection.execute(
            sa.select(table.c.id, table.c.body_json).where(
                table.c.typ == "correction/1", table.c.body_json.is_not(None)
            )
        ).all()
        for row_id, body_json in rows:
            try:
                body = json.loads(body_json)
            except ValueError:  # not JSON: nothing to keep
                continue
            corrected_at = body.get("corrected_at") if isinstance(body, dict) else None
            if isinstance(corrected_at, int) and not isinstance(corrected_at, bool):
                connection.execute(
                    sa.update(table).where(table.c.id == row_id).values(corrected_at=corrected_at)
                )


def downgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_column("corrected_at")
