"""The lookup key: the root of lookup hashes and pairwise subjects, sealed under the service secrets

Revision ID: 0011_lookup_key
Revises: 0010_place_previous

The row itself is made by the service (``idp db upgrade``, ``idp serve`` or the app's start) from
IDP_SECRET_KEY, so the subjects relying parties know stay the same (see ``idp.storage.lookup``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_lookup_key"
down_revision = "0010_place_previous"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lookup_keys",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("root_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lookup_keys")),
    )


def downgrade() -> None:
    op.drop_table("lookup_keys")
