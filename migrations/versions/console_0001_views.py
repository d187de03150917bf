"""console: saved views (console_views)

Revision ID: console_0001
Revises: 0001_foundation
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backend.core.db import UTCDateTime

revision = "console_0001"
down_revision = "0001_foundation"
branch_labels = ("console",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_views",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("page", sa.String(32), nullable=False),
        sa.Column("query", sa.String(1000), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_console_views_owner_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_views")),
    )
    op.create_index(op.f("ix_console_views_owner_id"), "console_views", ["owner_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_console_views_owner_id"), table_name="console_views")
    op.drop_table("console_views")
