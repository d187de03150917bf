"""knowledge base: kb_queue (the ingestion outbox)

Revision ID: kb_0001
Revises: 0001_foundation
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backend.core.db import UTCDateTime

revision = "kb_0001"
down_revision = "0001_foundation"
branch_labels = ("kb",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kb_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("ref_id", sa.String(64), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("done_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_queue")),
    )
    op.create_index("ix_kb_queue_pending", "kb_queue", ["done_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_kb_queue_pending", table_name="kb_queue")
    op.drop_table("kb_queue")
