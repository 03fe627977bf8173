"""The served generation's pointer and rebuild bookkeeping in the database, for replicas.

Revision ID: 0002
Revises: 0001

With a PostgreSQL store, several API processes on several hosts share one generations folder;
the pointer to the current generation is a row here (one truth every replica reads), not a file.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "generation_pointer",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("generation", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("generation_pointer")
