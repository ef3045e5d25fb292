"""Worker leases, outbox, webhooks and inlet settings (filled in by the worker)

Revision ID: 0003_worker
Revises: 0002_oidc
"""
from __future__ import annotations

revision = "0003_worker"
down_revision = "0002_oidc"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
