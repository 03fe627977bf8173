"""New-match alerts: subscriptions, what each has been told, the outbox and its delivery log.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False, index=True),
        sa.Column("networks", sa.Text, nullable=False),
        sa.Column("actor_id", sa.String(128), nullable=True),
        sa.Column("query", sa.Text, nullable=True),
        sa.Column("filters", sa.Text, nullable=False),
        sa.Column("top", sa.Integer, nullable=False),
        sa.Column("min_score", sa.Float, nullable=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("checked_generation", sa.String(64), nullable=True),
        sa.Column("checked_changes", sa.Integer, nullable=False),
        sa.Column("checked_at", sa.Float, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_table(
        "subscription_seen",
        sa.Column(
            "subscription_id",
            sa.String(40),
            sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("actor_id", sa.String(128), primary_key=True),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "subscription_id",
            sa.String(40),
            sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("generation", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("matches", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("delivered_at", sa.Float, nullable=True),
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "event_id",
            sa.String(40),
            sa.ForeignKey("alert_events.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("seconds", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("delivery_attempts", "alert_events", "subscription_seen", "subscriptions"):
        op.drop_table(table)
