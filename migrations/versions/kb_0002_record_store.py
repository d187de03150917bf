"""knowledge base: the record store in the application database (kb_records, kb_chunks), the
change sequence every replica's keyword index follows (kb_changes, kb_counters) and the writer
lease of an embedded Chroma directory (kb_leases). Replaces <data_dir>/kb/records.sqlite (copied
over once by ``RecordStore.import_legacy``).

Revision ID: kb_0002
Revises: kb_0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backend.core.db import UTCDateTime

revision = "kb_0002"
down_revision = "kb_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kb_records",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("location", sa.String(128), nullable=False),
        sa.Column("date", sa.Integer(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("jids", sa.Text(), nullable=False),
        sa.Column("owners", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sections", sa.Text(), nullable=True),
        sa.Column("source", sa.String(128), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_records")),
    )
    op.create_index(op.f("ix_kb_records_source"), "kb_records", ["source"])
    op.create_table(
        "kb_chunks",
        sa.Column("cid", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.String(128), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("article", sa.String(128), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("cid", name=op.f("pk_kb_chunks")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_kb_chunks_record_id"), "kb_chunks", ["record_id"])
    op.create_table(
        "kb_changes",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("record_id", sa.String(128), nullable=False),
        sa.Column("writer", sa.String(64), nullable=False),
        sa.Column("vec_done", sa.Boolean(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_kb_changes")),
    )
    op.create_index("ix_kb_changes_vec_pending", "kb_changes", ["vec_done", "seq"])
    counters = op.create_table(
        "kb_counters",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_kb_counters")),
    )
    op.bulk_insert(counters, [{"name": "changes", "value": 0}])
    op.create_table(
        "kb_leases",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("holder", sa.String(64), nullable=True),
        sa.Column("beat", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_kb_leases")),
    )


def downgrade() -> None:
    op.drop_table("kb_leases")
    op.drop_table("kb_counters")
    op.drop_index("ix_kb_changes_vec_pending", table_name="kb_changes")
    op.drop_table("kb_changes")
    op.drop_index(op.f("ix_kb_chunks_record_id"), table_name="kb_chunks")
    op.drop_table("kb_chunks")
    op.drop_index(op.f("ix_kb_records_source"), table_name="kb_records")
    op.drop_table("kb_records")
