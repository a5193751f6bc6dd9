"""H2 identifiers recorded again: numbers in text, declined and lower-case names, links

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-01 04:40:00
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The identifiers of H2 data now also cover document, card, account and personal
    # numbers in text and in documents without their issuing state, names in text
    # declined in Russian or with a Kazakh, Kyrgyz or Uzbek case ending or written in
    # lower case, tg://, viber:// and whatsapp:// links, m.me and instagr.am
    # addresses, facebook.com/people/…/<id>, and Gmail addresses without their dots
    # (gateway/identifiers.py); the numbers of a message's own case references are no
    # longer recorded. Until then the keys
    # recorded before stay; every message still holding a body is looked at again
    # (version 0: pending) so that the new ones are recorded too, by `gateway db
    # upgrade`, on first need or by the dispatcher.
    op.execute(
        "UPDATE inbound_messages SET h2_keys_version = 0, h2_indexed_at = NULL "
        "WHERE body_json IS NOT NULL"
    )


def downgrade() -> None:
    # The keys recorded meanwhile stay: nearly all of the earlier version's are among
    # them (it also paired a declined father's name, "Сергеевича", which this one does
    # not).
    pass
