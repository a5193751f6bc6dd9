"""a signed refusal from before the recipient's replay check proves nothing stored

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-01 07:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

# The rejection codes of PROTOCOL §3 steps 6 to 8: given after the recipient looked for
# a stored copy of the envelope (which it would have answered with that copy's receipt).
# A copy of gateway.dispatcher.AFTER_REPLAY_CHECK as it was when this revision was
# written (a migration stays what it was).
AFTER_REPLAY_CHECK = (
    "replay",
    "not-a-recipient",
    "unwrap-failed",
    "key-commitment-mismatch",
    "decrypt-failed",
    "schema-invalid",
    "unsupported-type",
    "policy-denied",
)


def upgrade() -> None:
    # Revision 0025 and the dispatcher until now took every signed refusal for proof that
    # the recipient stored nothing; one of steps 1 to 5 (`expired` from a recipient whose
    # clock runs ahead, `ttl-too-long`, `not-canonical`) comes before the replay check
    # and proves nothing (gateway.outbox.may_have_arrived).
    op.get_bind().execute(
        sa.text(
            "UPDATE delivery_events SET unstored_proven = NULL WHERE unstored_proven "
            "AND state = 'rejected' AND (code IS NULL OR code NOT IN :codes)"
        ).bindparams(sa.bindparam("codes", expanding=True)),
        {"codes": list(AFTER_REPLAY_CHECK)},
    )


def downgrade() -> None:
    # What 0025 set, for a database going back to the code of before this revision.
    op.execute(
        "UPDATE delivery_events SET unstored_proven = TRUE WHERE state = 'rejected' "
        "AND detail LIKE '% refused it with a signed receipt: %'"
    )
