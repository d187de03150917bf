"""faces: face_embeddings (the galleries in the database) and their change counters

Revision ID: faces_0001
Revises: 0001_foundation
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backend.core.db import UTCDateTime

revision = "faces_0001"
down_revision = "0001_foundation"
branch_labels = ("faces",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "face_embeddings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gallery", sa.String(32), nullable=False),
        sa.Column("person_id", sa.String(200), nullable=False),
        sa.Column("vector_id", sa.String(64), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_face_embeddings")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # 2048 bytes of float32 noise: inline, never compressed (pglz would try on every row and
        # fail) nor moved to the TOAST table (a second lookup per row on load)
        op.execute("ALTER TABLE face_embeddings ALTER COLUMN vector SET STORAGE PLAIN")
    op.create_index("ix_face_embeddings_changes", "face_embeddings", ["gallery", "seq"], unique=True)
    op.create_index("ix_face_embeddings_person", "face_embeddings", ["gallery", "person_id"])
    op.create_table(
        "face_sequences",
        sa.Column("gallery", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("epoch", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("gallery", name=op.f("pk_face_sequences")),
    )


def downgrade() -> None:
    op.drop_table("face_sequences")
    op.drop_index("ix_face_embeddings_person", table_name="face_embeddings")
    op.drop_index("ix_face_embeddings_changes", table_name="face_embeddings")
    op.drop_table("face_embeddings")
