"""An index on chunks.content_hash, for erasure.

Revision ID: 0003
Revises: 0002

Deleting an actor removes the cached vectors of its passages that no other chunk uses, and every
rebuild sweeps vectors no chunk uses; both ask "does any chunk still hold this hash?", which
without this index scans every chunk.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_chunks_content_hash", "chunks", ["content_hash"])


def downgrade() -> None:
    op.drop_index("ix_chunks_content_hash", table_name="chunks")
