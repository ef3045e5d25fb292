"""OpenID Connect interaction, codes and refresh tokens (filled in by the OIDC provider)

Revision ID: 0002_oidc
Revises: 0001_initial
"""
from __future__ import annotations

revision = "0002_oidc"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
