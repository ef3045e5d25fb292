"""Visitor ids and request ids leave the OpenID Connect and tokens tables: lookup tags and sealed values

Revision ID: 0013_hidden_ids
Revises: 0012_request_ids_at_rest

Rows stored by earlier releases are converted (``idp.storage.hidden_ids``): each visitor id becomes its
lookup tag, each request id its tag plus its sealed value, and codes and grants keep the visitor's
pairwise ``sub`` for their client instead of the visitor id. Converting needs the lookup key, which
opens under IDP_SECRET_KEY (read as the service reads it, with IDP_PREVIOUS_SECRET_KEYS); it is made
here from the secret when the service has not made it yet. A database with rows in these tables and
no usable secret (production without IDP_SECRET_KEY) stops the migration with the reason; an empty one
needs none.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision = "0013_hidden_ids"
down_revision = "0012_request_ids_at_rest"
branch_labels = None
depends_on = None

_TABLES = ("oidc_places", "oidc_interactions", "oidc_codes", "oidc_grants", "tokens")


def _add_columns() -> None:
    with op.batch_alter_table("oidc_places") as batch:
        batch.add_column(sa.Column("request_sealed", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("previous_sealed", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("oidc_interactions") as batch:
        batch.add_column(sa.Column("request_sealed", sa.LargeBinary(), nullable=True))
    for table in ("oidc_codes", "oidc_grants"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("subject", sa.String(length=64), nullable=True))
            batch.add_column(sa.Column("request_sealed", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("request_sealed", sa.LargeBinary(), nullable=True))


def _convert(conn: Any) -> None:
    if not any(conn.execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first() for table in _TABLES):  # noqa: S608
        return
    from idp.config import Settings
    from idp.oidc.claims import pairwise_sub
    from idp.storage.hidden_ids import HiddenIds
    from idp.storage.lookup import load_or_create

    settings = Settings.from_env().validate()
    with Session(bind=conn) as session:
        lookup = load_or_create(session, settings.secret_keys)
        session.flush()
    ids = HiddenIds(lookup)

    def hide(rid: str) -> tuple[str, bytes]:
        return ids.request_tag(rid), ids.seal_request(rid)

    places = conn.execute(
        sa.text("SELECT visitor_id, event_id, request_id, previous_request_id FROM oidc_places")
    ).all()
    for visitor_id, event_id, request_id, previous in places:
        tag, sealed = hide(request_id)
        previous_tag, previous_sealed = hide(previous) if previous else (None, None)
        conn.execute(
            sa.text(
                "UPDATE oidc_places SET visitor_id = :vt, request_id = :rt, request_sealed = :rs,"
                " previous_request_id = :pt, previous_sealed = :ps WHERE visitor_id = :v AND event_id = :e"
            ),
            {
                "vt": ids.visitor_tag(visitor_id),
                "rt": tag,
                "rs": sealed,
                "pt": previous_tag,
                "ps": previous_sealed,
                "v": visitor_id,
                "e": event_id,
            },
        )
    for interaction_id, visitor_id, request_id in conn.execute(
        sa.text("SELECT interaction_id, visitor_id, request_id FROM oidc_interactions")
    ).all():
        tag, sealed = hide(request_id)
        conn.execute(
            sa.text(
                "UPDATE oidc_interactions SET visitor_id = :vt, request_id = :rt, request_sealed = :rs"
                " WHERE interaction_id = :i"
            ),
            {"vt": ids.visitor_tag(visitor_id), "rt": tag, "rs": sealed, "i": interaction_id},
        )
    for table, key in (("oidc_codes", "code_hash"), ("oidc_grants", "grant_id")):
        rows = conn.execute(sa.text(f"SELECT {key}, client_id, visitor_id, request_id FROM {table}")).all()  # noqa: S608
        for row_key, client_id, visitor_id, request_id in rows:
            tag, sealed = hide(request_id)
            # The table and column names are the constants above.
            update = f"UPDATE {table} SET subject = :s, request_id = :rt, request_sealed = :rs WHERE {key} = :k"  # noqa: S608
            conn.execute(
                sa.text(update),
                {"s": pairwise_sub(lookup, visitor_id, client_id), "rt": tag, "rs": sealed, "k": row_key},
            )
    for (request_id,) in conn.execute(sa.text("SELECT request_id FROM tokens")).all():
        tag, sealed = hide(request_id)
        conn.execute(
            sa.text("UPDATE tokens SET request_id = :rt, request_sealed = :rs WHERE request_id = :r"),
            {"rt": tag, "rs": sealed, "r": request_id},
        )


def _require_columns() -> None:
    with op.batch_alter_table("oidc_places") as batch:
        batch.alter_column("request_sealed", existing_type=sa.LargeBinary(), nullable=False)
    with op.batch_alter_table("oidc_interactions") as batch:
        batch.alter_column("request_sealed", existing_type=sa.LargeBinary(), nullable=False)
    for table in ("oidc_codes", "oidc_grants"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("subject", existing_type=sa.String(length=64), nullable=False)
            batch.alter_column("request_sealed", existing_type=sa.LargeBinary(), nullable=False)
            batch.drop_column("visitor_id")
    with op.batch_alter_table("tokens") as batch:
        batch.alter_column("request_sealed", existing_type=sa.LargeBinary(), nullable=False)


def upgrade() -> None:
    _add_columns()
    _convert(op.get_bind())
    _require_columns()


def downgrade() -> None:
    raise RuntimeError(
        "0013_hidden_ids cannot be undone: the visitor ids and request ids it replaced by keyed hashes "
        "are gone. Restore a backup taken before the upgrade instead."
    )
