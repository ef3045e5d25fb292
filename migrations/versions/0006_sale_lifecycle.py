"""Sale lifecycle: schedule, room mode and targets on events; the pre-queue lottery

Revision ID: 0006_sale_lifecycle
Revises: 0005_queue_ledger
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_sale_lifecycle"
down_revision = "0005_queue_ledger"
branch_labels = None
depends_on = None

_EVENT_COLUMNS = (
    "prequeue_opens_at",
    "opens_at",
    "closes_at",
    "max_active",
    "max_per_minute",
    "session_idle_seconds",
)


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        for name in _EVENT_COLUMNS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("mode", sa.String(length=16), nullable=False, server_default="queue"))
    op.create_table(
        "lotteries",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("seed", sa.String(length=64), nullable=False),
        sa.Column("commitment", sa.String(length=64), nullable=False),
        sa.Column("committed_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_lotteries")),
    )
    op.create_table(
        "queue_pending",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("entry_id", sa.String(length=64), nullable=False),
        sa.Column("joined_at", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("event_id", "request_id", name=op.f("pk_queue_pending")),
        sa.UniqueConstraint("event_id", "idempotency_key", name=op.f("uq_queue_pending_event_id")),
    )
    op.create_table(
        "queue_draws",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("drawn_at", sa.BigInteger(), nullable=False),
        sa.Column("first_position", sa.BigInteger(), nullable=False),
        sa.Column("entrants", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_queue_draws")),
    )


def downgrade() -> None:
    op.drop_table("queue_draws")
    op.drop_table("queue_pending")
    op.drop_table("lotteries")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("mode")
        for name in reversed(_EVENT_COLUMNS):
            batch.drop_column(name)
