"""notify: outbox claims, resumable long texts, dead letters; people unreachable on a channel

Revision ID: notify_0001
Revises: 0001_foundation
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backend.core.db import UTCDateTime

revision = "notify_0001"
down_revision = "0001_foundation"
branch_labels = ("notify",)
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as b:
        b.add_column(sa.Column("claimed_until", UTCDateTime(), nullable=True))
        b.add_column(sa.Column("parts_sent", sa.Integer(), nullable=False, server_default="0"))
        b.add_column(sa.Column("dead_at", UTCDateTime(), nullable=True))
        b.create_index("ix_outbox_dead_at", ["dead_at"])
    op.create_table(
        "unreachable",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_unreachable_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", "channel", name=op.f("pk_unreachable")),
    )


def downgrade() -> None:
    op.drop_table("unreachable")
    with op.batch_alter_table("outbox") as b:
        b.drop_index("ix_outbox_dead_at")
        b.drop_column("dead_at")
        b.drop_column("parts_sent")
        b.drop_column("claimed_until")
