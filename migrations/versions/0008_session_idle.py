"""Session idle time: when a session was last seen by /verify

Revision ID: 0008_session_idle
Revises: 0007_key_activation
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_session_idle"
down_revision = "0007_key_activation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("last_seen_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("last_seen_at")
