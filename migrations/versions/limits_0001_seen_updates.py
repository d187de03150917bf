"""Telegram updates already handled, shared by every replica (bot.middlewares.DedupeMiddleware)

Revision ID: limits_0001
Revises: 0001_foundation
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backend.core.db import UTCDateTime

revision = "limits_0001"
down_revision = "0001_foundation"
branch_labels = ("limits",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_updates",
        sa.Column("bot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("bot_id", "update_id", name=op.f("pk_seen_updates")),
    )
    op.create_index(op.f("ix_seen_updates_seen_at"), "seen_updates", ["seen_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_seen_updates_seen_at"), table_name="seen_updates")
    op.drop_table("seen_updates")
