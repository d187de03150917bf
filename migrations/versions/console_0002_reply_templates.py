"""console: reply templates (console_reply_templates)

Revision ID: console_0002
Revises: console_0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backend.core.db import UTCDateTime

revision = "console_0002"
down_revision = "console_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_reply_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["updated_by"], ["users.id"],
                                name=op.f("fk_console_reply_templates_updated_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_reply_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_console_reply_templates_name")),
    )


def downgrade() -> None:
    op.drop_table("console_reply_templates")
