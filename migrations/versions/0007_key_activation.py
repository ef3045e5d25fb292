"""Signing keys are published before they sign: the time a key starts signing

Revision ID: 0007_key_activation
Revises: 0006_sale_lifecycle
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_key_activation"
down_revision = "0006_sale_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signing_keys") as batch:
        batch.add_column(sa.Column("active_from", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("signing_keys") as batch:
        batch.drop_column("active_from")
