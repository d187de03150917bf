"""sso: external_accounts (provider, subject → user) and sso_login_states

Revision ID: sso_0001
Revises: 0001_foundation
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backend.core.db import UTCDateTime

revision = "sso_0001"
down_revision = "0001_foundation"
branch_labels = ("sso",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "external_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("id_card_hash", sa.String(64), nullable=True),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_login_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_external_accounts_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_accounts")),
        sa.UniqueConstraint("provider", "subject", name=op.f("uq_external_accounts_provider")),
    )
    op.create_index(op.f("ix_external_accounts_user_id"), "external_accounts", ["user_id"])
    op.create_index(op.f("ix_external_accounts_id_card_hash"), "external_accounts", ["id_card_hash"])
    op.create_table(
        "sso_login_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=True),
        sa.Column("code_verifier", sa.String(128), nullable=True),
        sa.Column("redirect_uri", sa.String(512), nullable=False),
        sa.Column("next_path", sa.String(255), nullable=False),
        sa.Column("link_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["link_user_id"], ["users.id"], name=op.f("fk_sso_login_states_link_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_login_states")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_sso_login_states_state_hash")),
    )
    op.create_index(op.f("ix_sso_login_states_expires_at"), "sso_login_states", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_sso_login_states_expires_at"), table_name="sso_login_states")
    op.drop_table("sso_login_states")
    op.drop_index(op.f("ix_external_accounts_id_card_hash"), table_name="external_accounts")
    op.drop_index(op.f("ix_external_accounts_user_id"), table_name="external_accounts")
    op.drop_table("external_accounts")
