"""H2 identifiers recorded again: phone numbers, document and account numbers as people write them

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-30 18:45:00
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The identifiers of H2 data now also cover a phone number written with spaces,
    # brackets or without "+", a document number with look-alike Cyrillic or Greek
    # letters, "No" signs or other dashes, and an account's number beside its IBAN
    # (gateway/onward.py). The keys recorded before stay valid; every message still
    # holding a body is looked at again (version 0: pending) so that the new ones are
    # recorded too, on first need or by the dispatcher.
    op.execute(
        "UPDATE inbound_messages SET h2_keys_version = 0, h2_indexed_at = NULL "
        "WHERE body_json IS NOT NULL"
    )


def downgrade() -> None:
    pass  # the keys recorded meanwhile are a superset of the earlier version's
