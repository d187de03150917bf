"""missing persons (灯塔工程): cases, events, match candidates, cross-region help

Revision ID: missing_0001
Revises: 0001_foundation
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backend.core.db import UTCDateTime

revision = "missing_0001"
down_revision = "0001_foundation"
branch_labels = ("missing",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "missing_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_no", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("face_key", sa.String(40), nullable=False),
        sa.Column("reporter_id", sa.Integer(), nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(64), nullable=True),
        sa.Column("sex", sa.String(1), nullable=True),
        sa.Column("age", sa.Integer(), nullable=True),
        sa.Column("height_cm", sa.Integer(), nullable=True),
        sa.Column("place", sa.String(255), nullable=True),
        sa.Column("seen_at", UTCDateTime(), nullable=True),
        sa.Column("clothing", sa.Text(), nullable=True),
        sa.Column("health", sa.Text(), nullable=True),
        sa.Column("phone", sa.String(20), nullable=True),
        sa.Column("photo_ids", sa.JSON(), nullable=False),
        sa.Column("face_state", sa.String(16), nullable=False),
        sa.Column("face_delete_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["reporter_id"], ["users.id"], name=op.f("fk_missing_cases_reporter_id_users")),
        sa.ForeignKeyConstraint(["jurisdiction_id"], ["jurisdictions.id"],
                                name=op.f("fk_missing_cases_jurisdiction_id_jurisdictions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_missing_cases")),
        sa.UniqueConstraint("face_key", name=op.f("uq_missing_cases_face_key")),
    )
    op.create_index(op.f("ix_missing_cases_case_no"), "missing_cases", ["case_no"], unique=True)
    op.create_index(op.f("ix_missing_cases_kind"), "missing_cases", ["kind"])
    op.create_index(op.f("ix_missing_cases_status"), "missing_cases", ["status"])
    op.create_index(op.f("ix_missing_cases_reporter_id"), "missing_cases", ["reporter_id"])
    op.create_index(op.f("ix_missing_cases_jurisdiction_id"), "missing_cases", ["jurisdiction_id"])

    op.create_table(
        "missing_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["missing_cases.id"], name=op.f("fk_missing_events_case_id_missing_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_missing_events")),
    )
    op.create_index(op.f("ix_missing_events_case_id"), "missing_events", ["case_id"])

    op.create_table(
        "missing_candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("missing_id", sa.Integer(), nullable=False),
        sa.Column("found_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("rank_score", sa.Float(), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=True),
        sa.Column("reviewed_at", UTCDateTime(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["missing_id"], ["missing_cases.id"],
                                name=op.f("fk_missing_candidates_missing_id_missing_cases")),
        sa.ForeignKeyConstraint(["found_id"], ["missing_cases.id"],
                                name=op.f("fk_missing_candidates_found_id_missing_cases")),
        sa.ForeignKeyConstraint(["reviewer_id"], ["users.id"], name=op.f("fk_missing_candidates_reviewer_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_missing_candidates")),
        sa.UniqueConstraint("missing_id", "found_id", name="uq_missing_candidates_pair"),
    )
    op.create_index(op.f("ix_missing_candidates_missing_id"), "missing_candidates", ["missing_id"])
    op.create_index(op.f("ix_missing_candidates_found_id"), "missing_candidates", ["found_id"])
    op.create_index(op.f("ix_missing_candidates_status"), "missing_candidates", ["status"])

    op.create_table(
        "missing_assist_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("requester_id", sa.Integer(), nullable=False),
        sa.Column("jurisdiction_id", sa.Integer(), nullable=True),
        sa.Column("photo_id", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["requester_id"], ["users.id"],
                                name=op.f("fk_missing_assist_requests_requester_id_users")),
        sa.ForeignKeyConstraint(["jurisdiction_id"], ["jurisdictions.id"],
                                name=op.f("fk_missing_assist_requests_jurisdiction_id_jurisdictions")),
        sa.ForeignKeyConstraint(["photo_id"], ["stored_files.id"],
                                name=op.f("fk_missing_assist_requests_photo_id_stored_files")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_missing_assist_requests")),
    )
    op.create_index(op.f("ix_missing_assist_requests_requester_id"), "missing_assist_requests", ["requester_id"])

    op.create_table(
        "missing_assist_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("officer_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["missing_assist_requests.id"],
                                name=op.f("fk_missing_assist_answers_request_id_missing_assist_requests")),
        sa.ForeignKeyConstraint(["officer_id"], ["users.id"], name=op.f("fk_missing_assist_answers_officer_id_users")),
        sa.ForeignKeyConstraint(["case_id"], ["missing_cases.id"],
                                name=op.f("fk_missing_assist_answers_case_id_missing_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_missing_assist_answers")),
        sa.UniqueConstraint("request_id", "officer_id", name="uq_missing_assist_answers_pair"),
    )
    op.create_index(op.f("ix_missing_assist_answers_request_id"), "missing_assist_answers", ["request_id"])


def downgrade() -> None:
    op.drop_table("missing_assist_answers")
    op.drop_table("missing_assist_requests")
    op.drop_table("missing_candidates")
    op.drop_table("missing_events")
    op.drop_table("missing_cases")
