"""Queue stores keep request ids as keyed hashes: the sealed request id of a retried join

Revision ID: 0012_request_ids_at_rest
Revises: 0011_lookup_key
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_request_ids_at_rest"
down_revision = "0011_lookup_key"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows written before keep their request id as UUID text and are still found by it (idp.queue.at_rest).
    for table in ("queue_entries", "queue_pending"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("request_seal", sa.String(length=32), nullable=True))


def downgrade() -> None:
    for table in ("queue_pending", "queue_entries"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("request_seal")
