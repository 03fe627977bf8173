"""The store as it was before migrations existed (schema_version 1 in store_meta).

Revision ID: 0001
Revises: -

Tables are created only where missing: a store written by a release before migrations has all
or most of them already (the partners table was added later by `create_all`), and upgrading it
must keep its rows. A new database gets them all.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Chunk ids are FAISS ids and watermarks and are never reused, so a busy store burns through them:
# 64 bits on PostgreSQL; SQLite's AUTOINCREMENT key must be declared INTEGER (it is 64-bit anyway).
CHUNK_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Actor ids compare byte-wise on every backend, so cursors page the same way everywhere.
ACTOR_ID = sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")


def _tables() -> sa.MetaData:
    m = sa.MetaData()
    sa.Table(
        "actors",
        m,
        sa.Column("id", ACTOR_ID, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False, index=True),
        sa.Column("country", sa.String(2), nullable=False, index=True),
        sa.Column("region", sa.String(5), nullable=True, index=True),
        sa.Column("url", sa.Text, nullable=True),
        sa.Column("tenant", sa.String(128), nullable=False, index=True),
        sa.Column("networks", sa.Text, nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    for name, column, length in (
        ("actor_sectors", "code", 16),
        ("actor_clusters", "cluster_id", 128),
        ("actor_partners", "partner_id", 128),
    ):
        sa.Table(
            name,
            m,
            sa.Column("actor_id", sa.ForeignKey("actors.id", ondelete="CASCADE"), primary_key=True),
            sa.Column("ordinal", sa.Integer, primary_key=True),
            sa.Column(column, sa.String(length), nullable=False, index=name != "actor_partners"),
        )
    sa.Table(
        "documents",
        m,
        sa.Column("actor_id", sa.ForeignKey("actors.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("title", sa.Text, nullable=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("language_given", sa.Boolean, nullable=False),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("intent", sa.String(8), nullable=True),
        sa.Column("codes", sa.Text, nullable=False),
    )
    sa.Table(
        "chunks",
        m,
        sa.Column("id", CHUNK_ID, primary_key=True, autoincrement=True),
        sa.Column("actor_id", sa.ForeignKey("actors.id", ondelete="CASCADE"), nullable=False),
        sa.Column("document_id", sa.String(128), nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Index("ix_chunks_actor", "actor_id"),
        sqlite_autoincrement=True,
    )
    sa.Table(
        "embeddings",
        m,
        sa.Column("content_hash", sa.String(64), primary_key=True),
        sa.Column("model_id", sa.String(200), primary_key=True),
        sa.Column("vector", sa.LargeBinary, nullable=False),
    )
    sa.Table(
        "feedback",
        m,
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("context", sa.String(700), primary_key=True),
        sa.Column("actor_id", sa.String(128), primary_key=True),
        sa.Column("for_actor", sa.String(128), nullable=True),
        sa.Column("query", sa.Text, nullable=True),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    sa.Table(
        "store_meta",
        m,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    return m


def upgrade() -> None:
    _tables().create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    _tables().drop_all(op.get_bind())
