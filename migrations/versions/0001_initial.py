"""initial schema

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-25 07:05:18.316008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.Column("last_used_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_admin_keys")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_table(
        "clients",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("client_secret_hash", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("redirect_uris", sa.JSON(), nullable=False),
        sa.Column("post_logout_redirect_uris", sa.JSON(), nullable=False),
        sa.Column("token_endpoint_auth_methods", sa.JSON(), nullable=False),
        sa.Column("initiate_login_uri", sa.Text(), nullable=True),
        sa.Column("max_parked_seconds", sa.Integer(), nullable=False),
        sa.Column("id_token_signed_response_alg", sa.String(length=10), nullable=False),
        sa.Column("require_pkce", sa.Boolean(), nullable=False),
        sa.Column("scope", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_clients")),
    )
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clients_event_id"), ["event_id"], unique=False)

    op.create_table(
        "events",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("enable_queue_position_expiry", sa.Boolean(), nullable=False),
        sa.Column("queue_position_expiry_period", sa.BigInteger(), nullable=False),
        sa.Column("incr_serving_on_expiry", sa.Boolean(), nullable=False),
        sa.Column("token_validity_period", sa.BigInteger(), nullable=False),
        sa.Column("branding", sa.JSON(), nullable=False),
        sa.Column("allowed_return_urls", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_events")),
    )
    op.create_table(
        "queue_entries",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("entry_time", sa.BigInteger(), nullable=False),
        sa.Column("claimed", sa.Boolean(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("event_id", "position", name=op.f("pk_queue_entries")),
        sa.UniqueConstraint("event_id", "idempotency_key", name=op.f("uq_queue_entries_event_id")),
        sa.UniqueConstraint("request_id", name=op.f("uq_queue_entries_request_id")),
    )
    op.create_table(
        "queue_state",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("queue_counter", sa.BigInteger(), nullable=False),
        sa.Column("serving_counter", sa.BigInteger(), nullable=False),
        sa.Column("token_counter", sa.BigInteger(), nullable=False),
        sa.Column("expired_counter", sa.BigInteger(), nullable=False),
        sa.Column("completed_counter", sa.BigInteger(), nullable=False),
        sa.Column("abandoned_counter", sa.BigInteger(), nullable=False),
        sa.Column("max_expired", sa.BigInteger(), nullable=False),
        sa.Column("last_entry_time", sa.BigInteger(), nullable=False),
        sa.Column("last_issue_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_queue_state")),
    )
    op.create_table(
        "serving_issues",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("serving_counter", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("issue_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "serving_counter", name=op.f("pk_serving_issues")),
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("alg", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("private_key_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("retiring_at", sa.BigInteger(), nullable=True),
        sa.Column("retire_after", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
    )
    op.create_table(
        "tokens",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("queue_position", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("not_before", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("issuer", sa.String(length=300), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("session_status", sa.SmallInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_tokens")),
    )
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.create_index("ix_tokens_event_expires", ["event_id", "expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_tokens_event_expires")

    op.drop_table("tokens")
    op.drop_table("signing_keys")
    op.drop_table("serving_issues")
    op.drop_table("queue_state")
    op.drop_table("queue_entries")
    op.drop_table("events")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clients_event_id"))

    op.drop_table("clients")
    op.drop_table("audit_log")
    op.drop_table("admin_keys")
