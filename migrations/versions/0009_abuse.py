"""Abuse defence: per-event limits and join gate, rate-limit hits, spent challenges, refusal tallies

Revision ID: 0009_abuse
Revises: 0008_session_idle
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_abuse"
down_revision = "0008_session_idle"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_limits", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("challenge", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("on_refusal", sa.String(length=20), nullable=False, server_default="refuse"))
    op.create_table(
        "rate_limit_hits",
        sa.Column("id", _ID, nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_limit_hits")),
    )
    op.create_index("ix_rate_limit_hits_key_at", "rate_limit_hits", ["key", "at"], unique=False)
    op.create_table(
        "spent_challenges",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_spent_challenges")),
    )
    op.create_index(op.f("ix_spent_challenges_expires_at"), "spent_challenges", ["expires_at"], unique=False)
    op.create_table(
        "refusal_tallies",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("refused", sa.BigInteger(), nullable=False),
        sa.Column("last_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "address", name=op.f("pk_refusal_tallies")),
    )


def downgrade() -> None:
    op.drop_table("refusal_tallies")
    op.drop_index(op.f("ix_spent_challenges_expires_at"), table_name="spent_challenges")
    op.drop_table("spent_challenges")
    op.drop_index("ix_rate_limit_hits_key_at", table_name="rate_limit_hits")
    op.drop_table("rate_limit_hits")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("on_refusal")
        batch_op.drop_column("challenge")
        batch_op.drop_column("rate_limits")
