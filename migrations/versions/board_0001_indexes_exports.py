"""board: the board's indexes on disputes, and background exports (console_exports)

Revision ID: board_0001
Revises: disputes_0003 (a fork of the disputes line: its indexes are on the disputes table)
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backend.core.db import UTCDateTime

revision = "board_0001"
down_revision = "disputes_0003"
branch_labels = ("board",)
depends_on = None


def upgrade() -> None:
    op.create_index("ix_disputes_board", "disputes",
                    ["county_id", "township_id", "category", "status", "risk", "outcome", "escalated_county",
                     "overdue", "rating", "resolution_days"])
    op.create_index("ix_disputes_board_accepted", "disputes",
                    ["accepted_at", "county_id", "township_id", "category", "created_at"])
    op.create_index("ix_disputes_board_created", "disputes", ["county_id", "created_at"])
    op.create_index("ix_disputes_board_open", "disputes", ["county_id", "status", "risk"])
    op.create_table(
        "console_exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("fmt", sa.String(8), nullable=False),
        sa.Column("query", sa.String(1000), nullable=False),
        sa.Column("lang", sa.String(8), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("filename", sa.String(64), nullable=True),
        sa.Column("error", sa.String(255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("seen_at", UTCDateTime(), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_console_exports_owner_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_exports")),
    )
    op.create_index(op.f("ix_console_exports_owner_id"), "console_exports", ["owner_id"])
    op.create_index(op.f("ix_console_exports_status"), "console_exports", ["status"])


def downgrade() -> None:
    op.drop_index(op.f("ix_console_exports_status"), table_name="console_exports")
    op.drop_index(op.f("ix_console_exports_owner_id"), table_name="console_exports")
    op.drop_table("console_exports")
    op.drop_index("ix_disputes_board_open", table_name="disputes")
    op.drop_index("ix_disputes_board_created", table_name="disputes")
    op.drop_index("ix_disputes_board_accepted", table_name="disputes")
    op.drop_index("ix_disputes_board", table_name="disputes")
