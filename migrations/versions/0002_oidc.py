"""OpenID Connect interaction, codes and refresh tokens

Revision ID: 0002_oidc
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_oidc"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oidc_places",
        sa.Column("visitor_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("queue_position", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("visitor_id", "event_id", name=op.f("pk_oidc_places")),
    )
    op.create_table(
        "oidc_interactions",
        sa.Column("interaction_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("visitor_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("queue_position", sa.BigInteger(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("interaction_id", name=op.f("pk_oidc_interactions")),
    )
    op.create_index("ix_oidc_interactions_created", "oidc_interactions", ["created_at"], unique=False)
    op.create_table(
        "oidc_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("scope", sa.String(length=300), nullable=False),
        sa.Column("nonce", sa.Text(), nullable=True),
        sa.Column("code_challenge", sa.String(length=128), nullable=True),
        sa.Column("code_challenge_method", sa.String(length=10), nullable=True),
        sa.Column("visitor_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("queue_position", sa.BigInteger(), nullable=False),
        sa.Column("auth_time", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.Column("grant_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_oidc_codes")),
    )
    op.create_index("ix_oidc_codes_expires", "oidc_codes", ["expires_at"], unique=False)
    op.create_table(
        "oidc_grants",
        sa.Column("grant_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("visitor_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("queue_position", sa.BigInteger(), nullable=False),
        sa.Column("scope", sa.String(length=300), nullable=False),
        sa.Column("auth_time", sa.BigInteger(), nullable=False),
        sa.Column("refresh_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("grant_id", name=op.f("pk_oidc_grants")),
        sa.UniqueConstraint("refresh_hash", name=op.f("uq_oidc_grants_refresh_hash")),
    )
    op.create_index("ix_oidc_grants_session", "oidc_grants", ["event_id", "request_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_oidc_grants_session", table_name="oidc_grants")
    op.drop_table("oidc_grants")
    op.drop_index("ix_oidc_codes_expires", table_name="oidc_codes")
    op.drop_table("oidc_codes")
    op.drop_index("ix_oidc_interactions_created", table_name="oidc_interactions")
    op.drop_table("oidc_interactions")
    op.drop_table("oidc_places")
