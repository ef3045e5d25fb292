"""CORS origins for events and clients, refresh-token rotation

Revision ID: 0004_cors_public_clients
Revises: 0003_worker
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_cors_public_clients"
down_revision = "0003_worker"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("cors_origins", sa.JSON(none_as_null=True), nullable=True))
    op.add_column("clients", sa.Column("allowed_cors_origins", sa.JSON(none_as_null=True), nullable=True))
    op.add_column(
        "clients",
        sa.Column("refresh_token_rotation", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "oidc_used_refresh_tokens",
        sa.Column("refresh_hash", sa.String(length=64), nullable=False),
        sa.Column("grant_id", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("refresh_hash", name=op.f("pk_oidc_used_refresh_tokens")),
    )
    op.create_index("ix_oidc_used_refresh_tokens_grant_id", "oidc_used_refresh_tokens", ["grant_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_oidc_used_refresh_tokens_grant_id", table_name="oidc_used_refresh_tokens")
    op.drop_table("oidc_used_refresh_tokens")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("refresh_token_rotation")
        batch.drop_column("allowed_cors_origins")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("cors_origins")
