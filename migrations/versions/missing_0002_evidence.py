"""missing persons: matched photos and face boxes, two-step review, drafts, counters, help targets

Revision ID: missing_0002
Revises: missing_0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backend.core.db import UTCDateTime

revision = "missing_0002"
down_revision = "missing_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("missing_cases") as b:
        b.add_column(sa.Column("photo_faces", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        b.add_column(sa.Column("features", sa.Text(), nullable=True))
        b.add_column(sa.Column("notes", sa.Text(), nullable=True))
        b.add_column(sa.Column("draft_key", sa.String(40), nullable=True))
        b.create_unique_constraint("uq_missing_cases_draft_key", ["draft_key"])
    with op.batch_alter_table("missing_candidates") as b:
        b.add_column(sa.Column("missing_photo", sa.Integer(), nullable=False, server_default="0"))
        b.add_column(sa.Column("found_photo", sa.Integer(), nullable=False, server_default="0"))
        b.add_column(sa.Column("checklist", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        b.add_column(sa.Column("first_reviewer_id", sa.Integer(), nullable=True))
        b.add_column(sa.Column("reason", sa.String(24), nullable=True))
        b.add_column(sa.Column("release_at", UTCDateTime(), nullable=True))
        b.create_foreign_key("fk_missing_candidates_first_reviewer_id_users", "users", ["first_reviewer_id"], ["id"])
    with op.batch_alter_table("missing_assist_requests") as b:
        b.alter_column("photo_id", existing_type=sa.Integer(), nullable=True)
        b.add_column(sa.Column("target_id", sa.Integer(), nullable=True))
        b.add_column(sa.Column("face_box", sa.JSON(), nullable=True))
        b.add_column(sa.Column("marked_photo_id", sa.Integer(), nullable=True))
        b.create_foreign_key("fk_missing_assist_requests_target_id_jurisdictions", "jurisdictions", ["target_id"], ["id"])
        b.create_foreign_key("fk_missing_assist_requests_marked_photo_id_stored_files", "stored_files", ["marked_photo_id"], ["id"])
    op.create_table(
        "missing_counters",
        sa.Column("prefix", sa.String(40), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", name="pk_missing_counters"),
    )


def downgrade() -> None:
    op.drop_table("missing_counters")
    with op.batch_alter_table("missing_assist_requests") as b:
        b.drop_constraint("fk_missing_assist_requests_marked_photo_id_stored_files", type_="foreignkey")
        b.drop_constraint("fk_missing_assist_requests_target_id_jurisdictions", type_="foreignkey")
        b.drop_column("marked_photo_id")
        b.drop_column("face_box")
        b.drop_column("target_id")
        b.alter_column("photo_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("missing_candidates") as b:
        b.drop_constraint("fk_missing_candidates_first_reviewer_id_users", type_="foreignkey")
        for c in ("release_at", "reason", "first_reviewer_id", "checklist", "found_photo", "missing_photo"):
            b.drop_column(c)
    with op.batch_alter_table("missing_cases") as b:
        b.drop_constraint("uq_missing_cases_draft_key", type_="unique")
        for c in ("draft_key", "notes", "features", "photo_faces"):
            b.drop_column(c)
