"""The durable record of each event's Redis queue state (loss detection and recovery)

Revision ID: 0005_queue_ledger
Revises: 0004_cors_public_clients
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_queue_ledger"
down_revision = "0004_cors_public_clients"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_ledger",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("serving", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("losses", sa.BigInteger(), nullable=False),
        sa.Column("lost_positions", sa.BigInteger(), nullable=False),
        sa.Column("last_loss_at", sa.BigInteger(), nullable=True),
        sa.Column("last_loss_reason", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_queue_ledger")),
    )


def downgrade() -> None:
    op.drop_table("queue_ledger")
