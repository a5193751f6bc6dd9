"""H2 identifiers recorded again: parts of names, names in text, contacts, vehicles

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-01 02:10:00
"""

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The identifiers of H2 data now also cover each pair of words of a person's name
    # and its initials, the words of every text of the message next to each other,
    # e-mail addresses, messenger and social accounts, websites, phone numbers written
    # with "+" on any channel or in text and as dialled at home, vehicles and
    # organisations' registration numbers (gateway/identifiers.py). The keys recorded
    # before stay valid; every message still holding a body is looked at again
    # (version 0: pending) so that the new ones are recorded too, by `gateway db
    # upgrade`, on first need or by the dispatcher.
    op.execute(
        "UPDATE inbound_messages SET h2_keys_version = 0, h2_indexed_at = NULL "
        "WHERE body_json IS NOT NULL"
    )


def downgrade() -> None:
    pass  # the keys recorded meanwhile are a superset of the earlier version's
