"""The browser's place remembers the place it replaced, whose session ends when the new one is admitted

Revision ID: 0010_place_previous
Revises: 0009_abuse
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_place_previous"
down_revision = "0009_abuse"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oidc_places") as batch:
        batch.add_column(sa.Column("previous_request_id", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oidc_places") as batch:
        batch.drop_column("previous_request_id")
